-- Dead letters an operator sent back to their topic (`meterflow dead-letters requeue`), so
-- that a second requeue is refused unless asked for, and `list` can say how many are left.
CREATE TABLE dead_letter_requeues (
    topic        text NOT NULL,
    "partition"  integer NOT NULL,
    "offset"     bigint NOT NULL,
    times        integer NOT NULL DEFAULT 1,
    requeued_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, "partition", "offset")
);
