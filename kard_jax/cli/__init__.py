"""The `kard` command line: the entry point (`main`), one module per command (`commands/`), and
the flag layer every command shares (`flags`: validators, one-line errors, gin flags)."""
