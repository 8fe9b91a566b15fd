// `whale` — the WhaleTech command line (commands: WhaleCommands.cs). Usage errors (unknown flags, bad
// values, missing files) exit with code 2 and a one-line message; no stack trace for a user mistake.
using WhaleTech.Cli;

return Cli.Run(WhaleCommands.Root(), args);
