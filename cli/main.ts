/**
 * The `tributary` command: `serve` starts a broker; every other command is a client of a running
 * broker's HTTP API (see cli/client.ts). Each side is imported only when it runs: a broker does
 * not hold the client's modules, nor a client command the broker's (memory, start-up time).
 */
export {}; // a module (top-level await), though it imports nothing statically

const args = typeof Deno !== "undefined" ? Deno.args : process.argv.slice(2);

const [command, ...rest] = args;
let code: number;
if (command === "serve") {
  code = await (await import("./serve.ts")).runServe(rest);
} else {
  code = await (await import("./client.ts")).runClientCommand(args);
}
if (code !== 0 || command !== "serve") process.exit(code);

declare const Deno: { args: string[] } | undefined;
