-- Issue 8: nobody pays for the operator's outage.
--
-- A called player's deadline counts from the delivery of their your_turn to
-- a device (the event's ack, by either player of a duo), not from the call,
-- within a maximum: a call lasts at most twice its deadline. So:
--   acked before the deadline      -> deadline = ack + D (at least the call's)
--   acked late, or never acked     -> deadline = call + 2 D (the maximum)
-- where D = the call's own deadline - called_at. A player whose phone never
-- got the event because a hub, Redis or PostgreSQL was away is not expired
-- until the maximum, by which time the catch-up has delivered it.
-- PostgreSQL itself restarting while a player is called (nobody could unlock
-- or ack) gives them D again from the restart. Expiries that were due during
-- an outage are decided after it, on these facts.

-- When the called reservation r is due to expire (see above).
CREATE OR REPLACE FUNCTION rn_call_due(r reservations)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    WITH d AS (
        SELECT r.deadline - r.called_at AS len,
               (SELECT min(e.acked_at) FROM user_events e
                 WHERE e.created_at >= r.called_at
                   AND e.created_at < r.called_at + interval '1 minute'
                   AND e.kind = 'your_turn'
                   AND e.user_id IN (r.user_id, r.player2_id)
                   AND e.payload ->> 'reservation_id' = r.id::text) AS ack)
    SELECT greatest(
               CASE WHEN d.ack IS NOT NULL AND d.ack <= r.deadline
                    THEN greatest(r.deadline, d.ack + d.len)
                    ELSE r.deadline + d.len END,
               CASE WHEN pg_postmaster_start_time() > r.called_at
                    THEN pg_postmaster_start_time() + d.len END)
    FROM d
$$;

CREATE OR REPLACE FUNCTION rn_expire(p_arcade_id bigint, p_reservation_id bigint, p_deadline_s integer,
                                     p_refund boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_due timestamptz;
    v_balance integer;
    v_events jsonb := '[]';
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    SELECT * INTO r FROM reservations WHERE id = p_reservation_id AND arcade_id = a.id;
    IF FOUND AND r.status = 'called' THEN
        v_due := rn_call_due(r);
    END IF;
    IF v_due IS NULL OR v_due > now() THEN
        RETURN rn_answer(200, jsonb_strip_nulls(jsonb_build_object(
            'changed', false, 'status', r.status,
            'retry_in_ms', CASE WHEN r.status = 'called'
                                THEN greatest(0, rn_ms(v_due) - rn_ms(now())) END)));
    END IF;
    UPDATE reservations SET status = 'expired', ended_at = now()
     WHERE id = r.id
    RETURNING * INTO r;
    UPDATE arcades SET queue_version = queue_version + 1 WHERE id = a.id;

    IF coalesce(p_refund, false) THEN
        UPDATE users SET tickets_balance = tickets_balance + r.cost
         WHERE id = r.user_id
        RETURNING tickets_balance INTO v_balance;
        INSERT INTO ledger (user_id, delta, balance_after, kind, reservation_id)
        VALUES (r.user_id, r.cost, v_balance, 'refund', r.id);
        v_events := v_events || jsonb_build_array(rn_user_event(r.user_id, 'balance',
            jsonb_build_object('balance', v_balance, 'delta', r.cost, 'reason', 'refund',
                               'reservation_id', r.id)));
    END IF;
    v_events := v_events
        || rn_players_event(r.user_id, r.player2_id, 'reservation', jsonb_build_object(
               'reservation_id', r.id, 'arcade_id', a.id, 'game_id', r.game_id,
               'status', 'expired', 'refunded', coalesce(p_refund, false)))
        || rn_call_next(a.id, p_deadline_s);
    RETURN rn_queue_answer(200, jsonb_build_object('changed', true, 'reservation_id', r.id,
                                                   'refunded', coalesce(p_refund, false)),
                           v_events, a.id);
END
$$;

-- An ack of event p_id by its recipient (user p_uid or cabinet p_arcade_id),
-- received by the hub at p_at_ms (its wall clock; NULL: now). The hub may
-- record it late (it retries while PostgreSQL is away): the time the device
-- acked is what counts for the deadline, never in the future nor before the
-- event. Returns (kind, seconds from commit to ack), no row when it was not
-- the recipient's or was acked already.
CREATE OR REPLACE FUNCTION rn_ack(p_id bigint, p_uid text, p_arcade_id bigint, p_at_ms bigint)
RETURNS TABLE (kind text, seconds double precision) LANGUAGE sql AS $$
    UPDATE user_events e
       SET acked_at = greatest(e.created_at,
                               least(clock_timestamp(),
                                     coalesce(to_timestamp(p_at_ms / 1000.0), clock_timestamp())))
     WHERE e.id = p_id AND e.acked_at IS NULL
       AND (e.user_id = rn_user_id(p_uid) OR e.arcade_id = p_arcade_id)
    RETURNING e.kind, extract(epoch FROM e.acked_at - e.created_at)::double precision
$$;

-- Cabinet leases (0007): nobody could renew a lease while PostgreSQL was
-- down, so right after a restart every lease looks expired and the first
-- sweep would show every arcade offline (and put its called player back in
-- the queue). A lease counts from its renewal or from PostgreSQL's start,
-- whichever is later: the holders get a whole lease to renew.
CREATE OR REPLACE FUNCTION rn_cabinet_sweep(p_stale_ms integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a record;
    answer jsonb;
    answers jsonb := '[]';
    v_since timestamptz := now() - make_interval(secs => p_stale_ms / 1000.0);
BEGIN
    IF pg_postmaster_start_time() >= v_since THEN
        RETURN answers;
    END IF;
    FOR a IN
        SELECT id, cabinet_epoch FROM arcades
         WHERE status <> 'offline' AND deleted_at IS NULL
           AND cabinet_seen_at < v_since
    LOOP
        -- under the row lock again: a renewal that committed meanwhile wins
        PERFORM 1 FROM arcades
          WHERE id = a.id
            AND cabinet_seen_at < v_since
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
