"""One module per `kard` subcommand: each defines HELP, add_arguments(parser) and run(args) -> int."""
