"""Policy backends, GRPO trainer, checkpoints and schedules.

Entry point: `policy.trainer.train(policy.settings.TrainSettings(...), policy.settings.Hooks(...))`
returns the run summary; `policy.evaluate.pairwise_accuracy` scores a policy on held-out groups.
"""
