"""Policy backends, GRPO trainer, checkpoints and schedules."""
