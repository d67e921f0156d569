/**
 * @module The Kubernetes objects the operator owns in each namespace that holds Hearth resources (issue 12):
 * the node tier (a StatefulSet of Hearth nodes, the gateway Service, an HPA on in-flight work per node) and
 * the tenant's NetworkPolicy. Pure functions: the operator applies what these return (server-side apply).
 */

export const MANAGED_BY = 'hearth-operator';
export const FIELD_MANAGER = 'hearth-operator';
export const NODES = 'hearth-nodes';
export const GATEWAY_SERVICE = 'hearth-gateway';
export const TENANT_POLICY = 'hearth-tenant';
export const NODE_PORT = 8080;

/** How the operator makes Hearth nodes; the Helm chart fills it from its `nodes:` values. */
export interface NodeTemplate {
  readonly image: string;
  readonly imagePullPolicy?: string;
  readonly replicas: number;
  readonly maxReplicas: number;
  /** The HPA's target of busy instances (in-flight invocations) per node. */
  readonly targetInflightPerNode: number;
  /** Extra `hearth up` arguments, e.g. cluster mode's `--cluster --postgres URL --nats URL --redis URL`. */
  readonly args: readonly string[];
  readonly resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  /** The namespace the operator runs in: its pods may reach every tenant's nodes. */
  readonly operatorNamespace: string;
}

export const DEFAULT_NODE_TEMPLATE: NodeTemplate = {
  image: 'hearth:0.1.0',
  replicas: 1,
  maxReplicas: 1,
  targetInflightPerNode: 10,
  args: [],
  operatorNamespace: 'hearth-system',
};

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  blockOwnerDeletion?: boolean;
}

export interface OwnedObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    ownerReferences: OwnerReference[];
  };
  spec: Record<string, unknown>;
}

const selector = { 'app.kubernetes.io/name': 'hearth', 'app.kubernetes.io/component': 'node' };

function labels(): Record<string, string> {
  return { ...selector, 'app.kubernetes.io/managed-by': MANAGED_BY };
}

function meta(name: string, namespace: string, owners: OwnerReference[]): OwnedObject['metadata'] {
  return { name, namespace, labels: labels(), ownerReferences: owners };
}

/** The label selector of every object the operator owns. */
export const OWNED_SELECTOR = `app.kubernetes.io/managed-by=${MANAGED_BY}`;

/**
 * The node tier of one namespace. Every Hearth resource of the namespace is an owner (none the controller):
 * Kubernetes' garbage collector removes the tier with the last of them, as the operator itself does.
 */
export function nodeTier(namespace: string, owners: OwnerReference[], template: NodeTemplate): OwnedObject[] {
  const container = {
    name: 'hearth',
    image: template.image,
    ...(template.imagePullPolicy === undefined ? {} : { imagePullPolicy: template.imagePullPolicy }),
    args: [
      'up',
      '--host',
      '0.0.0.0',
      '--port',
      String(NODE_PORT),
      '--data-dir',
      '/var/lib/hearth',
      '--no-examples',
      ...template.args,
    ],
    ports: [{ name: 'http', containerPort: NODE_PORT, protocol: 'TCP' }],
    livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10, failureThreshold: 3 },
    readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 5, failureThreshold: 2 },
    volumeMounts: [{ name: 'data', mountPath: '/var/lib/hearth' }],
    ...(template.resources === undefined ? {} : { resources: template.resources }),
  };
  return [
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: meta(NODES, namespace, owners),
      spec: {
        serviceName: GATEWAY_SERVICE,
        replicas: template.replicas,
        selector: { matchLabels: selector },
        template: {
          metadata: { labels: labels() },
          spec: {
            // Sandboxed functions need user namespaces and cgroups of their own, as `hearth up` on a host.
            containers: [{ ...container, securityContext: { privileged: true } }],
            volumes: [{ name: 'data', emptyDir: {} }],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta(GATEWAY_SERVICE, namespace, owners),
      spec: {
        selector,
        ports: [{ name: 'http', port: NODE_PORT, targetPort: 'http', protocol: 'TCP' }],
      },
    },
    {
      apiVersion: 'autoscaling/v2',
      kind: 'HorizontalPodAutoscaler',
      metadata: meta(NODES, namespace, owners),
      spec: {
        scaleTargetRef: { apiVersion: 'apps/v1', kind: 'StatefulSet', name: NODES },
        minReplicas: template.replicas,
        maxReplicas: Math.max(template.replicas, template.maxReplicas),
        // Busy instances per node is Hearth's in-flight work; a metrics adapter (e.g. prometheus-adapter)
        // serves it from the nodes' /metrics as the pods metric hearth_instances{state="busy"}.
        metrics: [
          {
            type: 'Pods',
            pods: {
              metric: { name: 'hearth_instances', selector: { matchLabels: { state: 'busy' } } },
              target: { type: 'AverageValue', averageValue: String(template.targetInflightPerNode) },
            },
          },
        ],
      },
    },
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta(TENANT_POLICY, namespace, owners),
      spec: {
        // The tenant's nodes take traffic from its own namespace and from the operator, not other tenants.
        podSelector: { matchLabels: selector },
        policyTypes: ['Ingress'],
        ingress: [
          {
            from: [
              { podSelector: {} },
              {
                namespaceSelector: {
                  matchLabels: { 'kubernetes.io/metadata.name': template.operatorNamespace },
                },
              },
            ],
            ports: [{ protocol: 'TCP', port: NODE_PORT }],
          },
        ],
      },
    },
  ];
}

/** Where the nodes of a namespace serve, inside the cluster. */
export function gatewayUrl(namespace: string): string {
  return `http://${GATEWAY_SERVICE}.${namespace}.svc:${NODE_PORT}`;
}
