-- Journey Runtime's PostgreSQL schema, version 2: several nodes sharing
-- the work (see cluster.rs). Never edited once released.
--
-- An instance belongs to shard `id % 16` (instance ids are handed out in
-- the shards of the node that starts them). A node holds a shard while
-- its lease (on the database's clock) lasts; taking a shard moves its
-- epoch, and a commit of a shard's work checks that its node still holds
-- the shard at the epoch it took it with.

CREATE TABLE shards (
    shard integer PRIMARY KEY,
    -- The node holding it (`nodes.node`), or nobody.
    owner text,
    -- Moves each time a node takes the shard.
    epoch bigint NOT NULL DEFAULT 0,
    -- When the holder's lease ends unless renewed, ms since the Unix epoch.
    lease_until_ms bigint NOT NULL DEFAULT 0
);
INSERT INTO shards (shard) SELECT generate_series(0, 15);

-- Each running node: `node` names one process (its name and a start
-- id), renewed as its heartbeat with its leases.
CREATE TABLE nodes (
    node text PRIMARY KEY,
    name text NOT NULL,
    started_ms bigint NOT NULL,
    heartbeat_ms bigint NOT NULL,
    -- Where it serves its API, when it said.
    address text
);

-- Due timers are looked for by shard.
CREATE INDEX timers_by_shard ON timers ((instance % 16), due_ms);
