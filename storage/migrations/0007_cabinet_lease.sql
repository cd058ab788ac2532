-- Cabinet leases. The process holding a cabinet's socket drives its arcade;
-- if that process dies without a goodbye (kill -9, a lost machine), nothing
-- would ever show the arcade offline, and players would be called to a dead
-- cabinet. So holders renew a lease every few seconds, and every process
-- sweeps the arcades whose lease ran out to offline, through
-- rn_cabinet_offline (the same transition as the grace window's). The lease
-- functions (rn_cabinet_heartbeat, rn_cabinet_sweep) live in
-- storage/sql/03_queue.sql; the trigger's function stays here, beside its
-- trigger (a trigger needs its function when it is created).

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
