-- The run of each replica recorded last (Store::register_replica): a replica that finds
-- another run recorded under its name learns that a second engine was given that name.
CREATE TABLE replicas (
    owner         text COLLATE "C" PRIMARY KEY,
    run           text        NOT NULL,
    registered_at timestamptz NOT NULL
);
