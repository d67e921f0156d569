/**
 * @module Kubernetes mode (issue 12): the CRDs (derived from the domain schemas), the operator that reconciles
 * Function and EventGateway CRs into Hearth node tiers and deployments, and `hearth deploy --target k8s`.
 */

import { KubeConfig } from '@kubernetes/client-node';

export {
  applyFunctionPackage,
  type KubernetesDeployment,
  MAX_ARCHIVE_BYTES,
  waitForFunction,
} from './apply.js';
export { ARCHIVE_KEY, type CodeReference } from './code.js';
export { type CustomResourceDefinition, eventGatewayCrd, functionCrd, GROUP, VERSION } from './crd.js';
export {
  type Condition,
  FINALIZER,
  type HearthResource,
  type HearthStatus,
  type Operator,
  type OperatorOptions,
  type OperatorStats,
  startOperator,
} from './operator.js';
export {
  DEFAULT_NODE_TEMPLATE,
  GATEWAY_SERVICE,
  gatewayUrl,
  NODE_PORT,
  NODES,
  type NodeTemplate,
  nodeTier,
  TENANT_POLICY,
} from './resources.js';

/** A kubeconfig file, else $KUBECONFIG / ~/.kube/config, else the pod's service account (in-cluster). */
export function loadKubeConfig(file?: string, context?: string): KubeConfig {
  const config = new KubeConfig();
  if (file !== undefined) config.loadFromFile(file);
  else config.loadFromDefault();
  if (context !== undefined) config.setCurrentContext(context);
  return config;
}
