/**
 * @module `hearth operator`: the Kubernetes operator in the foreground (issue 12). It reconciles Function and
 * EventGateway CRs into node tiers and deployments until SIGINT/SIGTERM; the Helm chart runs it.
 */

import type { Command } from 'commander';
import { CliError } from '../errors.js';
import type { CommandContext } from '../options.js';

interface OperatorCliOptions {
  readonly kubeconfig?: string;
  readonly context?: string;
  readonly namespace?: string;
  readonly hearthUrl?: string;
  readonly nodeImage?: string;
  readonly nodeReplicas?: string;
  readonly nodeMaxReplicas?: string;
  readonly nodeArgs?: string;
  readonly targetInflight?: string;
  readonly operatorNamespace?: string;
  readonly resync?: string;
}

function positive(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1)
    throw new CliError(`${flag}: expected a whole number ≥ 1, got "${value}"`);
  return number;
}

export function register(program: Command, context: CommandContext): void {
  program
    .command('operator')
    .description('run the Kubernetes operator: reconcile Function and EventGateway CRs (hearth.dev/v1)')
    .option('--kubeconfig <file>', 'kubeconfig (default: $KUBECONFIG, ~/.kube/config, else in-cluster)')
    .option('--context <name>', 'kubeconfig context')
    .option('--namespace <ns>', 'watch one namespace only (default: all)')
    .option(
      '--hearth-url <url>',
      'the Hearth API of the nodes, {namespace} replaced (default: http://hearth-gateway.{namespace}.svc:8080)',
    )
    .option('--node-image <image>', 'the image of Hearth nodes (default: $HEARTH_NODE_IMAGE or hearth:0.1.0)')
    .option('--node-replicas <n>', 'nodes per namespace (the HPA minimum)')
    .option('--node-max-replicas <n>', 'the HPA maximum')
    .option(
      '--node-args <args>',
      'extra `hearth up` arguments, space-separated (cluster mode: --cluster --postgres …)',
    )
    .option('--target-inflight <n>', 'the HPA target of busy instances per node')
    .option('--operator-namespace <ns>', 'the namespace the operator runs in (default: $POD_NAMESPACE)')
    .option('--resync <seconds>', 'full reconcile period (default 30)')
    .action(async (options: OperatorCliOptions) => {
      const { loadKubeConfig, startOperator } = await import('../../k8s/index.js');
      const { io } = context;
      const env = io.env;
      const replicas = positive('--node-replicas', options.nodeReplicas);
      const maxReplicas = positive('--node-max-replicas', options.nodeMaxReplicas);
      const targetInflight = positive('--target-inflight', options.targetInflight);
      const resync = positive('--resync', options.resync);
      const image = options.nodeImage ?? env.HEARTH_NODE_IMAGE;
      const operatorNamespace = options.operatorNamespace ?? env.POD_NAMESPACE;
      const hearthUrl = options.hearthUrl;
      const operator = await startOperator({
        kubeConfig: loadKubeConfig(options.kubeconfig, options.context),
        ...(options.namespace === undefined ? {} : { namespace: options.namespace }),
        ...(hearthUrl === undefined
          ? {}
          : { hearthUrl: (ns: string) => hearthUrl.replaceAll('{namespace}', ns) }),
        ...(env.HEARTH_API_KEY === undefined ? {} : { hearthApiKey: env.HEARTH_API_KEY }),
        ...(resync === undefined ? {} : { resyncMs: resync * 1000 }),
        nodes: {
          ...(image === undefined ? {} : { image }),
          ...(replicas === undefined ? {} : { replicas }),
          ...(maxReplicas === undefined ? {} : { maxReplicas }),
          ...(targetInflight === undefined ? {} : { targetInflightPerNode: targetInflight }),
          ...(operatorNamespace === undefined ? {} : { operatorNamespace }),
          ...(options.nodeArgs === undefined ? {} : { args: options.nodeArgs.split(/\s+/).filter(Boolean) }),
        },
        log: (record) =>
          io.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`),
      });
      io.stderr.write('hearth operator: watching Function and EventGateway resources\n');
      await new Promise<void>((resolve) => {
        const done = () => resolve();
        process.once('SIGINT', done);
        process.once('SIGTERM', done);
        io.interrupt?.addEventListener('abort', done, { once: true });
      });
      await operator.stop();
    });
}
