"""lmms-eval glue: model registration and task discovery, the metric hook, data loading, the judge
client, running the CLI. The only layer (with models/ and the tasks) that imports lmms-eval."""
