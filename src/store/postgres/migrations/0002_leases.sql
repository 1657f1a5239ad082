-- Leases, for several replicas sharing the database: who drives a deployment, and until when
-- (by the holder's clock). Both are set or neither.

ALTER TABLE deployments
    ADD COLUMN lease_owner text,
    ADD COLUMN lease_until timestamptz,
    ADD CONSTRAINT deployments_lease_whole CHECK ((lease_owner IS NULL) = (lease_until IS NULL));

-- renew and release look up one owner's leases.
CREATE INDEX deployments_by_lease_owner ON deployments (lease_owner) WHERE lease_owner IS NOT NULL;
