"""The serving side, in three wings:

- `http`: the front end, what a request meets first: parsing, the classify routes, status and health, admin,
  the app's state and its dependencies; it holds no weights and imports no torch with the process engine;
- `engine`: the scheduler and what it decides with: the latency profile, the policy and admission, the front
  end's costs, the guardrail, and the model's hooks (the runner);
- `worker`: the processes and the wire between them: the front end's client of an engine process, the
  engine process itself, the messages on the pipes, restarts, CPU placement and the supervisor of
  `elastic serve --workers N`.

`settings` is shared by all three.
"""
