"""The engine: the scheduler (batches run stage by stage, answers at the deepest exit that fits), its
latency profile, the policy and admission that read it, and the runner's hooks into the model."""
