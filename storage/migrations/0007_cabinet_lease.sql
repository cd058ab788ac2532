-- Cabinet leases. The process holding a cabinet's socket drives its arcade;
-- if that process dies without a goodbye (kill -9, a lost machine), nothing
-- would ever show the arcade offline, and players would be called to a dead
-- cabinet. So holders renew a lease every few seconds, and every process
-- sweeps the arcades whose lease ran out to offline, through
-- rn_cabinet_offline (the same transition as the grace window's).

ALTER TABLE arcades ADD COLUMN cabinet_seen_at timestamptz NOT NULL DEFAULT now();

-- A cabinet coming online (rn_cabinet_online bumps the epoch) starts a fresh
-- lease in the same transaction, so a sweep can never catch it in between.
CREATE FUNCTION rn_cabinet_lease_on_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.cabinet_seen_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER arcades_cabinet_lease BEFORE UPDATE OF cabinet_epoch ON arcades
    FOR EACH ROW WHEN (NEW.cabinet_epoch IS DISTINCT FROM OLD.cabinet_epoch)
    EXECUTE FUNCTION rn_cabinet_lease_on_epoch();

-- Renews the leases of the arcades a process holds. Returns how many.
CREATE FUNCTION rn_cabinet_heartbeat(p_arcade_ids bigint[])
RETURNS integer LANGUAGE sql AS $$
    WITH renewed AS (
        UPDATE arcades SET cabinet_seen_at = now()
         WHERE id = ANY (p_arcade_ids) AND deleted_at IS NULL
        RETURNING 1)
    SELECT count(*)::integer FROM renewed
$$;

-- Shows offline every arcade not offline whose lease is older than
-- p_stale_ms. Returns the rn_cabinet_offline answers that changed something
-- (each with its events and snapshot, to publish). Conditional on the epoch,
-- so a cabinet that just came back, or a second process sweeping the same
-- arcade, changes nothing.
CREATE FUNCTION rn_cabinet_sweep(p_stale_ms integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a record;
    answer jsonb;
    answers jsonb := '[]';
BEGIN
    FOR a IN
        SELECT id, cabinet_epoch FROM arcades
         WHERE status <> 'offline' AND deleted_at IS NULL
           AND cabinet_seen_at < now() - make_interval(secs => p_stale_ms / 1000.0)
    LOOP
        -- under the row lock again: a renewal that committed meanwhile wins
        PERFORM 1 FROM arcades
          WHERE id = a.id
            AND cabinet_seen_at < now() - make_interval(secs => p_stale_ms / 1000.0)
          FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
        answer := rn_cabinet_offline(a.id, a.cabinet_epoch);
        IF answer ? 'arcade' THEN
            answers := answers || jsonb_build_array(answer);
        END IF;
    END LOOP;
    RETURN answers;
END
$$;
