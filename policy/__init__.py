"""Policy backends, GRPO trainer, checkpoints and schedules.

Entry point: `policy.trainer.train(policy.settings.TrainSettings(...), policy.settings.Hooks(...))`
returns the run summary; `policy.evaluate.pairwise_accuracy` scores a policy on held-out groups.
`policy.judge.load_judge` loads a frozen judge (reward model) for online training;
`policy.judge_train.train_judge` learns one from the logged candidates of group JSONL.
"""
