"""One module per `grpo` command group; `grpo_tui.cli` registers them and maps their errors."""
