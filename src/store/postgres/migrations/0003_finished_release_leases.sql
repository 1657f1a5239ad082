-- A finished deployment holds no lease: saves that finish one give it up from this version on.
-- Those finished before kept theirs, each an entry in deployments_by_lease_owner for good.

UPDATE deployments SET lease_owner = NULL, lease_until = NULL
WHERE finished AND lease_owner IS NOT NULL;
