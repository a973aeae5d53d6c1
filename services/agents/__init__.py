"""AI agents: `service.AgentService` is the entry point (configuration, status, schedule,
coordination); `cycle` runs one decision, `context` gathers what the agent sees,
`decision_log` writes the log; `risk`, `planning`, `coordination` and `calibration` are
pure rules, `run_stream` streams a cycle as AG-UI events."""
