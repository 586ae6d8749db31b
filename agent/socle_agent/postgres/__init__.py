"""PostgreSQL for the agent, one module per job: connection, dump, drill, restore, roles.

`socle_agent.sources.postgres` plugs them into the agent as the `postgres` source.
"""
