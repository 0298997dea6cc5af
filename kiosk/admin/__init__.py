"""The operators' surface over the job queue: queries, actions, audit log."""
