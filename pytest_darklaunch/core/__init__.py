"""The pure core: spec, metrics, Prometheus client, sampler, verdicts. Never imports pytest."""
