-- 0003_queue: the schema of each arcade's queue (DESIGN.md "Queue
-- semantics"): the cabinet epoch, failed unlock codes, the index of the
-- rolling game length. The queue's functions live in storage/sql/03_queue.sql.

ALTER TABLE arcades ADD COLUMN cabinet_epoch bigint NOT NULL DEFAULT 0
    CHECK (cabinet_epoch >= 0);

-- Wrong unlock codes typed on a cabinet: five within five minutes lock that
-- cabinet's unlock for 60 s. reservation_id is the one called at the time.
CREATE TABLE unlock_failures (
    id             bigserial PRIMARY KEY,
    arcade_id      bigint NOT NULL REFERENCES arcades (id) ON DELETE CASCADE,
    reservation_id bigint REFERENCES reservations (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX unlock_failures_arcade_idx ON unlock_failures (arcade_id, created_at);
CREATE INDEX unlock_failures_reservation_idx ON unlock_failures (reservation_id)
    WHERE reservation_id IS NOT NULL;
CREATE TRIGGER unlock_failures_touch BEFORE UPDATE ON unlock_failures
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

-- The rolling game length: an arcade's latest completed games.
CREATE INDEX reservations_completed_idx ON reservations (arcade_id, ended_at DESC)
    WHERE status = 'completed';
