/**
 * The `tributary` command: `serve` starts a broker; every other command is a client of a running
 * broker's HTTP API (see cli/client.ts).
 */
import { runServe } from "./serve.ts";
import { runClientCommand } from "./client.ts";

const args = typeof Deno !== "undefined" ? Deno.args : process.argv.slice(2);

const [command, ...rest] = args;
let code: number;
if (command === "serve") {
  code = await runServe(rest);
} else {
  code = await runClientCommand(args);
}
if (code !== 0 || command !== "serve") process.exit(code);

declare const Deno: { args: string[] } | undefined;
