"""The agent runtime: executes runs apart from any connection.

``worker`` (one per process: announced runs, sweeps, reaping), ``executor`` (one run:
claim, lease, streaming), ``coalescer`` (tokens into deltas, no I/O), ``turns`` (what
the agent reads) and ``embedded`` (the worker inside the server). Agents themselves
implement :class:`durable_sessions.agents.Agent`.
"""
