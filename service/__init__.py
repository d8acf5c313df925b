"""Multi-tenant counter service: Falcon API over Redis Cluster, PostgreSQL as the record."""
