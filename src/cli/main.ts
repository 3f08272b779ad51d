/** The `imp` command. */
import { agentHelp, runAgent } from './agent.ts';
import { UsageError } from './args.ts';
import { consoleHelp, runConsole } from './console.ts';
import { forwardHelp, runPortForward } from './forward.ts';
import { localHelp, runLocal } from './local.ts';
import { operatorHelp, runOperator } from './operator.ts';

const commands: Record<string, { run: (argv: string[]) => Promise<void>; help: string }> = {
  operator: { run: runOperator, help: operatorHelp },
  agent: { run: runAgent, help: agentHelp },
  local: { run: runLocal, help: localHelp },
  'port-forward': { run: runPortForward, help: forwardHelp },
  console: { run: runConsole, help: consoleHelp },
};

const usage = `imp: microVMs as Kubernetes resources

Commands:
  local up|down   run Imp on this host: control plane, operator, agent and the quick-start
  operator        run the operator (controllers, scheduling, webhooks, metrics)
  agent           run the node agent (images, disks, networks, VMMs)
  port-forward    forward a loopback port to a VM port
  console         print a VM's serial console

Run "imp COMMAND --help" for a command's flags.`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage);
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    console.error(`imp: unknown command "${name}"\n\n${usage}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(command.help);
    return 0;
  }
  try {
    await command.run(rest);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`imp ${name}: ${err.message}\n\n${command.help}`);
      return 2;
    }
    console.error(`imp ${name}: ${describe(err)}`);
    return 1;
  }
}

/** An error and its causes, one per line, for people. */
function describe(err: unknown): string {
  const lines: string[] = [];
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    lines.push(e instanceof Error ? e.message : String(e));
    if (lines.length > 6) break;
  }
  return lines.join('\n  caused by: ');
}

// Exit explicitly: after a failed start, open servers or watches would keep a broken
// process alive (and healthy-looking) forever.
process.exit(await main(process.argv.slice(2)));
