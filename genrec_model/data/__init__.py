"""Tables and their schemas, ingest cleaning rules, leave-one-out splits."""
