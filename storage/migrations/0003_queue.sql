-- 0003_queue: the queue of each arcade (DESIGN.md "Queue semantics").
--
-- Every function here that changes an arcade's queue
--   * first locks the arcade row (SELECT ... FOR UPDATE): one arcade's
--     transitions are serialised, whichever hub process runs them; lock order
--     is always arcade, then user (balance), so they cannot deadlock;
--   * bumps arcades.queue_version once, before it writes its events, so that
--     every event and snapshot it makes carries the new version;
--   * returns its answer (hub/db.h) with the new public snapshot as "arcade".
-- A call that changes nothing (a repeated transition, a second process trying
-- the same one) leaves queue_version alone and returns no "arcade".
--
-- Reservations are served in id order: the head of an arcade's queue is its
-- lowest waiting id, position = 1 + the number of waiting ids below. At most
-- one reservation per arcade is called or playing (a unique index of 0001).
--
-- Users are named by their Firebase uid (rn_user_id); the public snapshot
-- names players by pseudo only, and no REST body ever carries an unlock code:
-- the code travels only in the players' private your_turn event.

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

-- ---------------------------------------------------------------------------
-- Small helpers

-- Milliseconds since the epoch, NULL for NULL.
CREATE FUNCTION rn_ms(p_ts timestamptz)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT (extract(epoch FROM p_ts) * 1000)::bigint
$$;

-- A fresh 6-digit unlock code from the server's CSPRNG. gen_random_uuid()
-- (core since PostgreSQL 13, no extension) draws from pg_strong_random(); the
-- first 8 hex digits of a version-4 UUID are 32 random bits. Values at or
-- above 4,294,000,000 (the largest multiple of 10^6 below 2^32) are drawn
-- again, so every code is equally likely.
CREATE FUNCTION rn_unlock_code()
RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v bigint;
BEGIN
    LOOP
        v := ('x' || substr(gen_random_uuid()::text, 1, 8))::bit(32)::bigint;
        IF v < 4294000000 THEN
            RETURN lpad((v % 1000000)::text, 6, '0');
        END IF;
    END LOOP;
END
$$;

-- Mean length in seconds of the arcade's last 20 completed games (start of
-- play -> game over); 180 while fewer than 3 are known. At least 1.
CREATE FUNCTION rn_avg_game_s(p_arcade_id bigint)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN count(*) >= 3
                THEN greatest(1, round(avg(extract(epoch FROM t.ended_at - t.started_at))))::integer
                ELSE 180 END
    FROM (SELECT r.started_at, r.ended_at
          FROM reservations r
          WHERE r.arcade_id = p_arcade_id AND r.status = 'completed'
            AND r.started_at IS NOT NULL AND r.ended_at IS NOT NULL
          ORDER BY r.ended_at DESC
          LIMIT 20) t
$$;

-- A reservation's players by pseudo, booker first.
CREATE FUNCTION rn_players(p_user_id bigint, p_player2_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(u.pseudo ORDER BY o.n), '[]'::jsonb)
    FROM (VALUES (1, p_user_id), (2, p_player2_id)) AS o (n, uid)
    JOIN users u ON u.id = o.uid
$$;

-- 1-based position of a waiting reservation in its arcade's queue; NULL
-- for any other status.
CREATE FUNCTION rn_position(p_res reservations)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_res.status = 'waiting' THEN
        (SELECT count(*)::integer FROM reservations w
         WHERE w.arcade_id = p_res.arcade_id AND w.status = 'waiting' AND w.id <= p_res.id)
    END
$$;

-- Writes one private event per player of a reservation (booker first);
-- returns them as an array.
CREATE FUNCTION rn_players_event(p_user_id bigint, p_player2_id bigint, p_kind text,
                                 p_payload jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_events jsonb := jsonb_build_array(rn_user_event(p_user_id, p_kind, p_payload));
BEGIN
    IF p_player2_id IS NOT NULL THEN
        v_events := v_events || jsonb_build_array(rn_user_event(p_player2_id, p_kind, p_payload));
    END IF;
    RETURN v_events;
END
$$;

-- ---------------------------------------------------------------------------
-- The public snapshot

-- The public view of an arcade's queue (hub/queue.h), or NULL for an unknown
-- or deleted arcade. Players by pseudo only: never a uid, never a code.
-- eta_s = position x avg_game_s (rn_avg_game_s): always an estimate.
CREATE FUNCTION rn_queue_snapshot(p_arcade_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    a arcades;
    v_avg integer;
    v_called jsonb;
    v_playing jsonb;
    v_waiting jsonb;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_avg := rn_avg_game_s(a.id);

    SELECT jsonb_build_object('reservation_id', r.id, 'game_id', r.game_id, 'game', g.name,
                              'slot', ag.slot, 'players', rn_players(r.user_id, r.player2_id),
                              'deadline_ms', rn_ms(r.deadline))
    INTO v_called
    FROM reservations r
    JOIN games g ON g.id = r.game_id
    LEFT JOIN arcade_games ag ON ag.arcade_id = r.arcade_id AND ag.game_id = r.game_id
    WHERE r.arcade_id = a.id AND r.status = 'called';

    SELECT jsonb_build_object('reservation_id', r.id, 'game_id', r.game_id, 'game', g.name,
                              'slot', ag.slot, 'players', rn_players(r.user_id, r.player2_id),
                              'started_ms', rn_ms(r.started_at))
    INTO v_playing
    FROM reservations r
    JOIN games g ON g.id = r.game_id
    LEFT JOIN arcade_games ag ON ag.arcade_id = r.arcade_id AND ag.game_id = r.game_id
    WHERE r.arcade_id = a.id AND r.status = 'playing';

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'reservation_id', w.id, 'position', w.pos, 'game_id', w.game_id, 'game', g.name,
               'players', rn_players(w.user_id, w.player2_id), 'eta_s', w.pos * v_avg)
               ORDER BY w.id), '[]'::jsonb)
    INTO v_waiting
    FROM (SELECT r.id, r.game_id, r.user_id, r.player2_id,
                 row_number() OVER (ORDER BY r.id) AS pos
          FROM reservations r
          WHERE r.arcade_id = a.id AND r.status = 'waiting') w
    JOIN games g ON g.id = w.game_id;

    RETURN jsonb_build_object(
        'type', 'queue', 'arcade_id', a.id, 'v', a.queue_version, 'name', a.name,
        'status', a.status, 'called', v_called, 'playing', v_playing, 'waiting', v_waiting,
        'avg_game_s', v_avg, 'eta_is_estimate', true);
END
$$;

-- The answer of a queue mutation: rn_answer plus the arcade's new snapshot.
CREATE FUNCTION rn_queue_answer(p_status integer, p_body jsonb, p_events jsonb,
                                p_arcade_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_answer(p_status, p_body, p_events)
           || jsonb_build_object('arcade', rn_queue_snapshot(p_arcade_id))
$$;

-- ---------------------------------------------------------------------------
-- Internal transitions (the arcade row is locked by the caller, and the
-- caller has bumped queue_version)

-- position events {reservation_id, arcade_id, position, eta_s,
-- eta_is_estimate} to the players of every waiting reservation of the arcade
-- whose id is above p_after_id: those whose position changed when
-- p_after_id left the waiting list (0: all of them).
CREATE FUNCTION rn_position_events(p_arcade_id bigint, p_after_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_avg integer := rn_avg_game_s(p_arcade_id);
    v_events jsonb := '[]';
    w record;
BEGIN
    FOR w IN
        SELECT t.* FROM (SELECT r.id, r.user_id, r.player2_id,
                                row_number() OVER (ORDER BY r.id)::integer AS pos
                         FROM reservations r
                         WHERE r.arcade_id = p_arcade_id AND r.status = 'waiting') t
        WHERE t.id > p_after_id
        ORDER BY t.id
    LOOP
        v_events := v_events || rn_players_event(w.user_id, w.player2_id, 'position',
            jsonb_build_object('reservation_id', w.id, 'arcade_id', p_arcade_id,
                               'position', w.pos, 'eta_s', w.pos * v_avg,
                               'eta_is_estimate', true));
    END LOOP;
    RETURN v_events;
END
$$;

-- The cabinet's own view of its queue: the public snapshot without "type"
-- (the event's kind is cabinet_queue). Never the code: the hub compares it.
CREATE FUNCTION rn_cabinet_queue_event(p_arcade_id bigint)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT rn_cabinet_event(p_arcade_id, 'cabinet_queue', rn_queue_snapshot(p_arcade_id) - 'type')
$$;

-- Calls the head of the queue when the arcade is idle, nothing is called or
-- playing, and someone waits: the head becomes called with a deadline of
-- p_deadline_s seconds (120 when NULL or not positive). Events: your_turn
-- (with the code) and reservation called to its players, cabinet_queue to
-- the cabinet, position to every player still waiting. Returns the events
-- (an array, empty when nothing was called).
CREATE FUNCTION rn_call_next(p_arcade_id bigint, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_game text;
    v_slot integer;
    v_events jsonb := '[]';
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id;
    IF NOT FOUND OR a.deleted_at IS NOT NULL OR a.status <> 'idle' THEN
        RETURN v_events;
    END IF;
    IF EXISTS (SELECT 1 FROM reservations
               WHERE arcade_id = a.id AND status IN ('called', 'playing')) THEN
        RETURN v_events;
    END IF;
    SELECT * INTO r FROM reservations
    WHERE arcade_id = a.id AND status = 'waiting'
    ORDER BY id LIMIT 1
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN v_events;
    END IF;

    UPDATE reservations
       SET status = 'called', called_at = now(),
           deadline = now() + make_interval(secs => CASE WHEN coalesce(p_deadline_s, 0) > 0
                                                         THEN p_deadline_s ELSE 120 END)
     WHERE id = r.id
    RETURNING * INTO r;
    SELECT g.name, ag.slot INTO v_game, v_slot
    FROM games g
    LEFT JOIN arcade_games ag ON ag.arcade_id = r.arcade_id AND ag.game_id = g.id
    WHERE g.id = r.game_id;

    v_events := v_events
        || rn_players_event(r.user_id, r.player2_id, 'your_turn', jsonb_build_object(
               'reservation_id', r.id, 'arcade_id', a.id, 'arcade', a.name,
               'code', r.unlock_code, 'deadline_ms', rn_ms(r.deadline),
               'game_id', r.game_id, 'game', v_game, 'slot', v_slot))
        || rn_players_event(r.user_id, r.player2_id, 'reservation', jsonb_build_object(
               'reservation_id', r.id, 'arcade_id', a.id, 'game_id', r.game_id,
               'status', 'called', 'deadline_ms', rn_ms(r.deadline)))
        || jsonb_build_array(rn_cabinet_queue_event(a.id))
        || rn_position_events(a.id, r.id);
    RETURN v_events;
END
$$;

-- Puts the called reservation (if any) back at the head of the queue: the
-- cabinet went away or into maintenance before it was unlocked, so its
-- players keep their turn (and their code) for when it is back. Returns the
-- events: reservation waiting to its players, positions of everyone waiting.
CREATE FUNCTION rn_uncall(p_arcade_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r reservations;
BEGIN
    UPDATE reservations SET status = 'waiting', called_at = NULL, deadline = NULL
     WHERE arcade_id = p_arcade_id AND status = 'called'
    RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN '[]'::jsonb;
    END IF;
    RETURN rn_players_event(r.user_id, r.player2_id, 'reservation', jsonb_build_object(
               'reservation_id', r.id, 'arcade_id', r.arcade_id, 'game_id', r.game_id,
               'status', 'waiting', 'position', rn_position(r),
               'reason', 'cabinet_unavailable'))
        || rn_position_events(p_arcade_id, 0);
END
$$;

-- The outcome of a completed reservation: {scores:[{pseudo, score}] (booker
-- first), winner: pseudo|null, tie}.
CREATE FUNCTION rn_game_result(p_res reservations)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'scores', coalesce(jsonb_agg(jsonb_build_object('pseudo', u.pseudo, 'score', s.score)
                                     ORDER BY (s.user_id = p_res.user_id) DESC), '[]'::jsonb),
        'winner', (SELECT u2.pseudo FROM scores s2 JOIN users u2 ON u2.id = s2.user_id
                   WHERE s2.reservation_id = p_res.id AND s2.is_winner),
        'tie', coalesce(bool_or(s.is_tie), false))
    FROM scores s JOIN users u ON u.id = s.user_id
    WHERE s.reservation_id = p_res.id
$$;

-- A reservation as its participants see it over REST. Never the code.
CREATE FUNCTION rn_reservation_json(p_res reservations)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_pos integer := rn_position(p_res);
    v_body jsonb;
BEGIN
    SELECT jsonb_build_object(
               'id', p_res.id, 'arcade_id', p_res.arcade_id, 'arcade', a.name,
               'game_id', p_res.game_id, 'game', g.name, 'slot', ag.slot,
               'status', p_res.status, 'position', v_pos,
               'eta_s', v_pos * rn_avg_game_s(p_res.arcade_id),
               'eta_is_estimate', true, 'cost', p_res.cost,
               'players', rn_players(p_res.user_id, p_res.player2_id),
               'created_at', p_res.created_at, 'called_at', p_res.called_at,
               'deadline', p_res.deadline, 'deadline_ms', rn_ms(p_res.deadline),
               'started_at', p_res.started_at, 'ended_at', p_res.ended_at)
    INTO v_body
    FROM arcades a, games g
    LEFT JOIN arcade_games ag ON ag.arcade_id = p_res.arcade_id AND ag.game_id = g.id
    WHERE a.id = p_res.arcade_id AND g.id = p_res.game_id;
    IF p_res.status = 'completed' THEN
        v_body := v_body || jsonb_build_object('result', rn_game_result(p_res));
    END IF;
    RETURN v_body;
END
$$;

-- ---------------------------------------------------------------------------
-- Reserve and cancel (REST)

-- The work of rn_reserve once the caller is known and its key claimed.
CREATE FUNCTION rn_reserve_do(p_user_id bigint, p_arcade_id bigint, p_game_id bigint,
                              p_player2_uid text, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    g games;
    r reservations;
    v_p2 bigint;
    v_players integer;
    v_balance integer;
    v_events jsonb := '[]';
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    IF a.status = 'maintenance' THEN
        RETURN rn_error(409, 'arcade_unavailable',
                        format('arcade %s is in maintenance; try again later', a.id));
    END IF;
    SELECT g0.* INTO g FROM games g0
    JOIN arcade_games ag ON ag.game_id = g0.id AND ag.arcade_id = a.id
    WHERE g0.id = p_game_id AND g0.active;
    IF NOT FOUND THEN
        RETURN rn_error(422, 'game_not_on_arcade',
                        format('game %s is not available on arcade %s', p_game_id, a.id));
    END IF;

    IF p_player2_uid IS NOT NULL THEN
        v_p2 := rn_user_id(p_player2_uid);
        IF v_p2 = p_user_id THEN
            RETURN rn_error(422, 'not_a_friend', 'player 2 must be a friend, not yourself');
        END IF;
        IF v_p2 IS NULL OR NOT EXISTS (
               SELECT 1 FROM friendships f
               WHERE f.status = 'accepted'
                 AND least(f.requester_id, f.addressee_id) = least(p_user_id, v_p2)
                 AND greatest(f.requester_id, f.addressee_id) = greatest(p_user_id, v_p2)) THEN
            RETURN rn_error(422, 'not_a_friend', 'player 2 must be one of your accepted friends');
        END IF;
    END IF;
    v_players := CASE WHEN v_p2 IS NULL THEN 1 ELSE 2 END;
    IF v_players < g.min_players OR v_players > g.max_players THEN
        RETURN rn_error(422, 'wrong_player_count',
                        format('%s is for %s to %s players; this reservation has %s',
                               g.name, g.min_players, g.max_players, v_players),
                        jsonb_build_object('min_players', g.min_players,
                                           'max_players', g.max_players));
    END IF;

    IF EXISTS (SELECT 1 FROM reservations
               WHERE arcade_id = a.id AND status IN ('waiting', 'called', 'playing')
                 AND (user_id = p_user_id OR player2_id = p_user_id)) THEN
        RETURN rn_error(409, 'already_queued',
                        format('you are already in the queue of arcade %s', a.id));
    END IF;
    IF v_p2 IS NOT NULL AND EXISTS (
           SELECT 1 FROM reservations
           WHERE arcade_id = a.id AND status IN ('waiting', 'called', 'playing')
             AND (user_id = v_p2 OR player2_id = v_p2)) THEN
        RETURN rn_error(409, 'already_queued',
                        format('player 2 is already in the queue of arcade %s', a.id));
    END IF;

    SELECT tickets_balance INTO v_balance FROM users WHERE id = p_user_id FOR UPDATE;
    IF v_balance < g.ticket_cost THEN
        RETURN rn_error(409, 'insufficient_tickets',
                        format('%s costs %s tickets; your balance is %s',
                               g.name, g.ticket_cost, v_balance),
                        jsonb_build_object('balance', v_balance, 'cost', g.ticket_cost));
    END IF;

    -- Every check passed: from here on, change things.
    UPDATE arcades SET queue_version = queue_version + 1 WHERE id = a.id;
    INSERT INTO reservations (arcade_id, game_id, user_id, player2_id, unlock_code, cost)
    VALUES (a.id, g.id, p_user_id, v_p2, rn_unlock_code(), g.ticket_cost)
    RETURNING * INTO r;
    UPDATE users SET tickets_balance = tickets_balance - g.ticket_cost
     WHERE id = p_user_id
    RETURNING tickets_balance INTO v_balance;
    INSERT INTO ledger (user_id, delta, balance_after, kind, reservation_id)
    VALUES (p_user_id, -g.ticket_cost, v_balance, 'reservation', r.id);

    v_events := v_events
        || jsonb_build_array(rn_user_event(p_user_id, 'balance', jsonb_build_object(
               'balance', v_balance, 'delta', -g.ticket_cost, 'reason', 'reservation',
               'reservation_id', r.id)))
        || rn_players_event(r.user_id, r.player2_id, 'reservation', jsonb_build_object(
               'reservation_id', r.id, 'arcade_id', a.id, 'game_id', g.id,
               'status', 'waiting', 'position', rn_position(r)))
        || rn_position_events(a.id, r.id - 1);
    v_events := v_events || rn_call_next(a.id, p_deadline_s);

    SELECT * INTO r FROM reservations WHERE id = r.id; -- called already, perhaps
    RETURN rn_queue_answer(201, jsonb_build_object('reservation', rn_reservation_json(r),
                                                   'balance', v_balance),
                           v_events, a.id);
END
$$;

-- POST /api/v1/reservations. Books p_game_id on p_arcade_id for p_uid (and
-- player 2, an accepted friend, by uid), debits the game's ticket cost, queues
-- it at the tail and calls it at once if the cabinet is idle. Idempotent on
-- (user, p_idem_key) with p_req_hash the request's hash (rn_idem_begin).
-- 201 {"reservation": {...}, "balance": N}.
CREATE FUNCTION rn_reserve(p_uid text, p_arcade_id bigint, p_game_id bigint,
                           p_player2_uid text, p_idem_key text, p_req_hash text,
                           p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
    v_replay jsonb;
BEGIN
    IF v_user IS NULL THEN
        RETURN rn_error(404, 'not_registered', 'register first (POST /api/v1/auth/register)');
    END IF;
    v_replay := rn_idem_begin(v_user, p_idem_key, coalesce(p_req_hash, ''));
    IF v_replay IS NOT NULL THEN
        RETURN v_replay;
    END IF;
    RETURN rn_idem_finish(v_user, p_idem_key,
                          rn_reserve_do(v_user, p_arcade_id, p_game_id, p_player2_uid,
                                        p_deadline_s));
END
$$;

-- DELETE /api/v1/reservations/{id}: the booker cancels a waiting reservation
-- and gets its cost back (once: ledger_refund_once). 404 for anyone but its
-- players (its existence is not theirs to know), 403 for player 2, 409 once
-- it is no longer waiting (a repeated cancel included).
CREATE FUNCTION rn_cancel(p_uid text, p_reservation_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
    v_arcade bigint;
    r reservations;
    v_balance integer;
    v_events jsonb := '[]';
BEGIN
    IF v_user IS NULL THEN
        RETURN rn_error(404, 'not_registered', 'register first (POST /api/v1/auth/register)');
    END IF;
    SELECT arcade_id INTO v_arcade FROM reservations WHERE id = p_reservation_id;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'reservation_not_found', 'no such reservation');
    END IF;
    PERFORM 1 FROM arcades WHERE id = v_arcade FOR UPDATE;
    SELECT * INTO r FROM reservations WHERE id = p_reservation_id FOR UPDATE;
    IF r.user_id <> v_user THEN
        IF r.player2_id = v_user THEN
            RETURN rn_error(403, 'not_owner', 'only the player who booked it can cancel it');
        END IF;
        RETURN rn_error(404, 'reservation_not_found', 'no such reservation');
    END IF;
    IF r.status <> 'waiting' THEN
        RETURN rn_error(409, 'not_cancellable',
                        format('the reservation is %s: only a waiting reservation can be cancelled',
                               r.status),
                        jsonb_build_object('status', r.status));
    END IF;

    UPDATE arcades SET queue_version = queue_version + 1 WHERE id = v_arcade;
    UPDATE reservations SET status = 'cancelled', ended_at = now()
     WHERE id = r.id
    RETURNING * INTO r;
    UPDATE users SET tickets_balance = tickets_balance + r.cost
     WHERE id = r.user_id
    RETURNING tickets_balance INTO v_balance;
    INSERT INTO ledger (user_id, delta, balance_after, kind, reservation_id)
    VALUES (r.user_id, r.cost, v_balance, 'refund', r.id);

    v_events := v_events
        || jsonb_build_array(rn_user_event(r.user_id, 'balance', jsonb_build_object(
               'balance', v_balance, 'delta', r.cost, 'reason', 'refund',
               'reservation_id', r.id)))
        || rn_players_event(r.user_id, r.player2_id, 'reservation', jsonb_build_object(
               'reservation_id', r.id, 'arcade_id', r.arcade_id, 'game_id', r.game_id,
               'status', 'cancelled'))
        || rn_position_events(v_arcade, r.id);
    RETURN rn_queue_answer(200, jsonb_build_object('reservation', rn_reservation_json(r),
                                                   'balance', v_balance, 'refunded', r.cost),
                           v_events, v_arcade);
END
$$;

-- ---------------------------------------------------------------------------
-- The cabinet side (called by hub/cabinet.c)

-- The cabinet's socket authenticated: a new epoch (returned, for
-- rn_cabinet_offline), offline -> idle (or playing while a reservation still
-- plays; maintenance stays), then the head is called if it can be. The
-- cabinet always gets a cabinet_queue event with its current queue.
-- 200 {"epoch": N, "status": "..."}.
CREATE FUNCTION rn_cabinet_online(p_arcade_id bigint, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    v_events jsonb;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    UPDATE arcades
       SET cabinet_epoch = cabinet_epoch + 1, queue_version = queue_version + 1,
           status = CASE
               WHEN status = 'maintenance' THEN 'maintenance'
               WHEN EXISTS (SELECT 1 FROM reservations
                            WHERE arcade_id = p_arcade_id AND status = 'playing') THEN 'playing'
               ELSE 'idle' END
     WHERE id = a.id
    RETURNING * INTO a;
    v_events := rn_call_next(a.id, p_deadline_s);
    IF jsonb_array_length(v_events) = 0 THEN
        v_events := jsonb_build_array(rn_cabinet_queue_event(a.id));
    END IF;
    RETURN rn_queue_answer(200, jsonb_build_object('epoch', a.cabinet_epoch, 'status', a.status),
                           v_events, a.id);
END
$$;

-- The cabinet has been gone longer than the grace window. Only when no newer
-- connection came since (cabinet_epoch = p_epoch): status -> offline, and a
-- called reservation goes back to the head of the queue (rn_uncall); one
-- that plays stays playing. 200 {"changed": bool}.
CREATE FUNCTION rn_cabinet_offline(p_arcade_id bigint, p_epoch bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    v_events jsonb;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    IF a.cabinet_epoch <> p_epoch OR a.status = 'offline' THEN
        RETURN rn_answer(200, jsonb_build_object('changed', false, 'epoch', a.cabinet_epoch));
    END IF;
    UPDATE arcades SET status = 'offline', queue_version = queue_version + 1 WHERE id = a.id;
    v_events := rn_uncall(a.id);
    RETURN rn_queue_answer(200, jsonb_build_object('changed', true, 'epoch', a.cabinet_epoch),
                           v_events, a.id);
END
$$;

-- The cabinet reports its state: 'idle' (ready: the head is called if any;
-- 409 game_in_progress while a reservation plays: it must send game_over) or
-- 'maintenance' (a called reservation goes back to the head of the queue; a
-- playing one plays on). 'playing' is set by a right unlock code, not here:
-- 422. 200 {"status": "...", "changed": bool}.
CREATE FUNCTION rn_cabinet_status(p_arcade_id bigint, p_state text, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    v_events jsonb := '[]';
BEGIN
    IF p_state IS NULL OR p_state NOT IN ('idle', 'maintenance') THEN
        RETURN rn_error(422, 'bad_state', 'state must be "idle" or "maintenance"');
    END IF;
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    IF p_state = 'idle' AND EXISTS (SELECT 1 FROM reservations
                                    WHERE arcade_id = a.id AND status = 'playing') THEN
        RETURN rn_error(409, 'game_in_progress',
                        'a reservation is playing: send game_over for it first');
    END IF;
    -- Nothing to do: already in that state, and (idle) nobody could be called.
    IF a.status = p_state
       AND (p_state = 'maintenance'
            OR EXISTS (SELECT 1 FROM reservations WHERE arcade_id = a.id AND status = 'called')
            OR NOT EXISTS (SELECT 1 FROM reservations
                           WHERE arcade_id = a.id AND status = 'waiting')) THEN
        RETURN rn_answer(200, jsonb_build_object('status', a.status, 'changed', false));
    END IF;
    UPDATE arcades SET status = p_state, queue_version = queue_version + 1 WHERE id = a.id;
    IF p_state = 'maintenance' THEN
        v_events := rn_uncall(a.id);
    ELSE
        v_events := rn_call_next(a.id, p_deadline_s);
    END IF;
    RETURN rn_queue_answer(200, jsonb_build_object('status', p_state, 'changed', true),
                           v_events, a.id);
END
$$;

-- Seconds the arcade's unlock is still locked: after 5 wrong codes within 5
-- minutes, 60 s from the latest of them. 0 when not locked.
CREATE FUNCTION rn_unlock_locked_for_s(p_arcade_id bigint)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(greatest(0, ceil(extract(epoch FROM
               f.created_at + interval '60 seconds' - now())))::integer), 0)
    FROM (SELECT u.created_at FROM unlock_failures u
          WHERE u.arcade_id = p_arcade_id AND u.created_at > now() - interval '5 minutes'
          ORDER BY u.created_at DESC
          LIMIT 1) f
    WHERE (SELECT count(*) FROM unlock_failures u2
           WHERE u2.arcade_id = p_arcade_id
             AND u2.created_at > f.created_at - interval '5 minutes'
             AND u2.created_at <= f.created_at) >= 5
$$;

-- For the hub's constant-time compare: the called reservation and its code
-- (both NULL when nothing is called), and how many seconds unlock is locked
-- (0: not locked). One row for a live arcade, none for an unknown one.
CREATE FUNCTION rn_called_code(p_arcade_id bigint)
RETURNS TABLE (reservation_id bigint, unlock_code text, locked_for_s integer)
LANGUAGE sql STABLE AS $$
    SELECT r.id, r.unlock_code, rn_unlock_locked_for_s(a.id)
    FROM arcades a
    LEFT JOIN reservations r ON r.arcade_id = a.id AND r.status = 'called'
    WHERE a.id = p_arcade_id AND a.deleted_at IS NULL
$$;

-- The hub compared a typed code with the called one (rn_called_code).
-- p_ok: the reservation, if still called, starts playing (single use: 409
-- not_called otherwise); 200 {"ok":true,"reservation_id":N}, reservation
-- playing to its players, unlock_result to the cabinet.
-- Not ok: the failure counts towards the lock; 200 {"ok":false,
-- "attempts_left":N,"locked_for_s":S}. While locked nothing is recorded and
-- even a right code is refused (ok false, attempts_left 0). Failures count
-- for 5 minutes: once a lock has run out, a further wrong code within those
-- minutes locks again.
CREATE FUNCTION rn_unlock_result(p_arcade_id bigint, p_reservation_id bigint, p_ok boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_found boolean;
    v_locked integer;
    v_recent integer;
    v_events jsonb;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    v_locked := rn_unlock_locked_for_s(a.id);
    IF v_locked > 0 THEN
        RETURN rn_answer(200, jsonb_build_object('ok', false, 'attempts_left', 0,
                                                 'locked_for_s', v_locked));
    END IF;
    SELECT * INTO r FROM reservations
    WHERE id = p_reservation_id AND arcade_id = a.id
    FOR UPDATE;
    v_found := FOUND;

    IF NOT coalesce(p_ok, false) THEN
        DELETE FROM unlock_failures
         WHERE arcade_id = a.id AND created_at < now() - interval '1 hour';
        INSERT INTO unlock_failures (arcade_id, reservation_id)
        VALUES (a.id, CASE WHEN v_found THEN r.id END);
        SELECT count(*) INTO v_recent FROM unlock_failures
        WHERE arcade_id = a.id AND created_at > now() - interval '5 minutes';
        RETURN rn_answer(200, jsonb_build_object(
            'ok', false, 'attempts_left', greatest(0, 5 - v_recent),
            'locked_for_s', rn_unlock_locked_for_s(a.id)));
    END IF;

    IF NOT v_found THEN
        RETURN rn_error(404, 'reservation_not_found',
                        format('no reservation %s on arcade %s', p_reservation_id, a.id));
    END IF;
    IF r.status <> 'called' THEN
        RETURN rn_error(409, 'not_called',
                        format('reservation %s is %s, not called', r.id, r.status),
                        jsonb_build_object('status', r.status));
    END IF;
    UPDATE arcades SET status = 'playing', queue_version = queue_version + 1 WHERE id = a.id;
    UPDATE reservations SET status = 'playing', started_at = now()
     WHERE id = r.id
    RETURNING * INTO r;
    v_events := rn_players_event(r.user_id, r.player2_id, 'reservation', jsonb_build_object(
                    'reservation_id', r.id, 'arcade_id', a.id, 'game_id', r.game_id,
                    'status', 'playing'))
        || jsonb_build_array(rn_cabinet_event(a.id, 'unlock_result', jsonb_build_object(
               'ok', true, 'reservation_id', r.id, 'game_id', r.game_id,
               'players', rn_players(r.user_id, r.player2_id))));
    RETURN rn_queue_answer(200, jsonb_build_object('ok', true, 'reservation_id', r.id),
                           v_events, a.id);
END
$$;

-- The cabinet says the game started: an acknowledgement, changes nothing.
-- 200 {"ok":true} while the reservation plays (or is already over); 404
-- unknown here; 409 not_playing before it was unlocked.
CREATE FUNCTION rn_game_started(p_arcade_id bigint, p_reservation_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r reservations;
BEGIN
    SELECT * INTO r FROM reservations WHERE id = p_reservation_id AND arcade_id = p_arcade_id;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'reservation_not_found',
                        format('no reservation %s on arcade %s', p_reservation_id, p_arcade_id));
    END IF;
    IF r.status NOT IN ('playing', 'completed') THEN
        RETURN rn_error(409, 'not_playing', format('reservation %s is %s', r.id, r.status),
                        jsonb_build_object('status', r.status));
    END IF;
    RETURN rn_answer(200, jsonb_build_object('ok', true, 'reservation_id', r.id,
                                             'status', r.status));
END
$$;

-- Game over for the playing reservation. p_scores is a JSON array with one
-- entry per player, either integers in player order ([booker, player 2]) or
-- objects {"pseudo": "...", "score": N} (any order, each player once). The
-- highest score wins; equal scores of a duo are a tie; a solo game has no
-- winner. Saves the scores, completes the reservation, frees the cabinet
-- (playing -> idle; maintenance or offline stay), pushes score and
-- reservation completed to the players and calls the next one.
-- Idempotent: for a completed reservation the same body again, nothing new.
-- 200 {"reservation_id":N,"scores":[{pseudo,score}],"winner":pseudo|null,"tie":bool}.
-- 422 bad_scores, 404 unknown here, 409 not_playing.
CREATE FUNCTION rn_game_over(p_arcade_id bigint, p_reservation_id bigint, p_scores jsonb,
                             p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_uids bigint[];
    v_scores bigint[] := '{}';
    v_n integer;
    v_kind text;
    v_best bigint;
    v_tie boolean;
    v_result jsonb;
    v_events jsonb := '[]';
    v_e jsonb;
    v_idx integer;
    v_uid bigint;
    v_text text;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    SELECT * INTO r FROM reservations
    WHERE id = p_reservation_id AND arcade_id = a.id
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'reservation_not_found',
                        format('no reservation %s on arcade %s', p_reservation_id, a.id));
    END IF;
    IF r.status = 'completed' THEN
        RETURN rn_answer(200, jsonb_build_object('reservation_id', r.id) || rn_game_result(r));
    END IF;
    IF r.status <> 'playing' THEN
        RETURN rn_error(409, 'not_playing', format('reservation %s is %s', r.id, r.status),
                        jsonb_build_object('status', r.status));
    END IF;

    -- Validate the scores, all before any change.
    v_uids := CASE WHEN r.player2_id IS NULL THEN ARRAY[r.user_id]
                   ELSE ARRAY[r.user_id, r.player2_id] END;
    v_n := array_length(v_uids, 1);
    IF jsonb_typeof(p_scores) IS DISTINCT FROM 'array' OR jsonb_array_length(p_scores) <> v_n THEN
        RETURN rn_error(422, 'bad_scores', format('scores must be an array of %s entries', v_n));
    END IF;
    v_scores := array_fill(NULL::bigint, ARRAY[v_n]);
    FOR v_idx IN 1 .. v_n LOOP
        v_e := p_scores -> (v_idx - 1);
        v_kind := jsonb_typeof(v_e);
        IF v_kind = 'number' THEN
            v_uid := v_uids[v_idx];
        ELSIF v_kind = 'object' AND jsonb_typeof(v_e -> 'pseudo') = 'string' THEN
            SELECT u.id INTO v_uid FROM users u
            WHERE u.id = ANY (v_uids) AND lower(u.pseudo) = lower(v_e ->> 'pseudo');
            IF NOT FOUND THEN
                RETURN rn_error(422, 'bad_scores',
                                format('%s is not a player of this reservation', v_e ->> 'pseudo'));
            END IF;
            v_e := v_e -> 'score';
        ELSE
            RETURN rn_error(422, 'bad_scores',
                            'each score is an integer or {"pseudo": "...", "score": N}');
        END IF;
        v_text := v_e #>> '{}';
        IF jsonb_typeof(v_e) IS DISTINCT FROM 'number' OR v_text !~ '^-?[0-9]{1,18}$' THEN
            RETURN rn_error(422, 'bad_scores', 'a score is an integer');
        END IF;
        IF v_scores[array_position(v_uids, v_uid)] IS NOT NULL THEN
            RETURN rn_error(422, 'bad_scores', 'each player has exactly one score');
        END IF;
        v_scores[array_position(v_uids, v_uid)] := v_text::bigint;
    END LOOP;

    IF v_n = 2 THEN
        v_best := greatest(v_scores[1], v_scores[2]);
        v_tie := v_scores[1] = v_scores[2];
    ELSE
        v_tie := false;
    END IF;

    UPDATE arcades
       SET queue_version = queue_version + 1,
           status = CASE WHEN status = 'playing' THEN 'idle' ELSE status END
     WHERE id = a.id;
    INSERT INTO scores (reservation_id, user_id, score, is_winner, is_tie)
    SELECT r.id, v_uids[i], v_scores[i], v_n = 2 AND NOT v_tie AND v_scores[i] = v_best,
           v_tie
    FROM generate_series(1, v_n) AS i;
    UPDATE reservations SET status = 'completed', ended_at = now()
     WHERE id = r.id
    RETURNING * INTO r;

    v_result := jsonb_build_object('reservation_id', r.id) || rn_game_result(r);
    FOR v_idx IN 1 .. v_n LOOP
        v_events := v_events || jsonb_build_array(rn_user_event(v_uids[v_idx], 'score',
            jsonb_build_object('arcade_id', a.id, 'game_id', r.game_id) || v_result
            || jsonb_build_object('you', jsonb_build_object(
                   'score', v_scores[v_idx],
                   'won', v_n = 2 AND NOT v_tie AND v_scores[v_idx] = v_best))));
    END LOOP;
    v_events := v_events
        || rn_players_event(r.user_id, r.player2_id, 'reservation', jsonb_build_object(
               'reservation_id', r.id, 'arcade_id', a.id, 'game_id', r.game_id,
               'status', 'completed'))
        || rn_call_next(a.id, p_deadline_s);
    RETURN rn_queue_answer(200, v_result, v_events, a.id);
END
$$;

-- The called reservation's deadline passed (no-show). Conditional: only a
-- reservation still called with its deadline gone expires, so a second
-- process trying the same changes nothing (200 {"changed":false}, with
-- "retry_in_ms" when it is still called but not yet due: the caller's clock
-- ran ahead). Refunded when p_refund. Then the next one is called.
-- 200 {"changed":true,"reservation_id":N,"refunded":bool}.
CREATE FUNCTION rn_expire(p_arcade_id bigint, p_reservation_id bigint, p_deadline_s integer,
                          p_refund boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_balance integer;
    v_events jsonb := '[]';
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    UPDATE reservations SET status = 'expired', ended_at = now()
     WHERE id = p_reservation_id AND arcade_id = a.id
       AND status = 'called' AND deadline <= now()
    RETURNING * INTO r;
    IF NOT FOUND THEN
        SELECT * INTO r FROM reservations WHERE id = p_reservation_id AND arcade_id = a.id;
        RETURN rn_answer(200, jsonb_strip_nulls(jsonb_build_object(
            'changed', false, 'status', r.status,
            'retry_in_ms', CASE WHEN r.status = 'called'
                                THEN greatest(0, rn_ms(r.deadline) - rn_ms(now())) END)));
    END IF;
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

-- ---------------------------------------------------------------------------
-- Reads (REST)

-- GET /api/v1/reservations/{id}: its players only (404 for anyone else).
CREATE FUNCTION rn_reservation_get(p_uid text, p_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
    r reservations;
BEGIN
    SELECT * INTO r FROM reservations
    WHERE id = p_id AND v_user IS NOT NULL AND (user_id = v_user OR player2_id = v_user);
    IF NOT FOUND THEN
        RETURN rn_error(404, 'reservation_not_found', 'no such reservation');
    END IF;
    RETURN rn_answer(200, jsonb_build_object('reservation', rn_reservation_json(r)));
END
$$;

-- GET /api/v1/reservations/my: the caller's reservations (booked or as
-- player 2), newest first, p_limit (1..100) after the cursor (an id, exclusive).
-- 200 {"items":[...],"next_cursor":id|null}.
CREATE FUNCTION rn_reservations_my(p_uid text, p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
    v_limit integer := least(greatest(coalesce(p_limit, 20), 1), 100);
    v_items jsonb;
    v_count integer;
    v_last bigint;
BEGIN
    IF v_user IS NULL THEN
        RETURN rn_error(404, 'not_registered', 'register first (POST /api/v1/auth/register)');
    END IF;
    SELECT coalesce(jsonb_agg(rn_reservation_json(t.res) ORDER BY (t.res).id DESC), '[]'::jsonb),
           count(*), min((t.res).id)
    INTO v_items, v_count, v_last
    FROM (SELECT r AS res FROM reservations r
          WHERE (r.user_id = v_user OR r.player2_id = v_user)
            AND (p_cursor IS NULL OR r.id < p_cursor)
          ORDER BY r.id DESC
          LIMIT v_limit) t;
    RETURN rn_answer(200, jsonb_build_object(
        'items', v_items,
        'next_cursor', CASE WHEN v_count = v_limit AND EXISTS (
                                 SELECT 1 FROM reservations r
                                 WHERE (r.user_id = v_user OR r.player2_id = v_user)
                                   AND r.id < v_last)
                            THEN v_last END));
END
$$;

-- An arcade as the catalogue shows it: its games by slot and its queue length.
CREATE FUNCTION rn_public_arcade_json(p_arcade arcades)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p_arcade.id, 'name', p_arcade.name, 'location', p_arcade.location,
        'status', p_arcade.status,
        'queue_length', (SELECT count(*) FROM reservations r
                         WHERE r.arcade_id = p_arcade.id AND r.status = 'waiting'),
        'avg_game_s', rn_avg_game_s(p_arcade.id),
        'games', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'slot', ag.slot, 'game_id', g.id, 'name', g.name,
                             'ticket_cost', g.ticket_cost, 'min_players', g.min_players,
                             'max_players', g.max_players) ORDER BY ag.slot), '[]'::jsonb)
                  FROM arcade_games ag JOIN games g ON g.id = ag.game_id
                  WHERE ag.arcade_id = p_arcade.id AND g.active))
$$;

-- GET /api/v1/arcades: every live arcade. 200 {"items":[...],"next_cursor":null}.
CREATE FUNCTION rn_arcades_list()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_answer(200, jsonb_build_object(
        'items', coalesce(jsonb_agg(rn_public_arcade_json(a) ORDER BY a.id), '[]'::jsonb),
        'next_cursor', NULL))
    FROM arcades a
    WHERE a.deleted_at IS NULL
$$;

-- GET /api/v1/arcades/{id}. 200 {"arcade": {...}} or 404.
CREATE FUNCTION rn_arcade_get(p_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT rn_answer(200, jsonb_build_object('arcade', rn_public_arcade_json(a)))
         FROM arcades a WHERE a.id = p_id AND a.deleted_at IS NULL),
        rn_error(404, 'arcade_not_found', format('no arcade %s', p_id)))
$$;

-- GET /api/v1/arcades/{id}/queue: the public snapshot, or 404.
CREATE FUNCTION rn_arcade_queue(p_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN s IS NULL
                THEN rn_error(404, 'arcade_not_found', format('no arcade %s', p_id))
                ELSE rn_answer(200, s) END
    FROM rn_queue_snapshot(p_id) AS s
$$;

-- A game as the catalogue shows it, with the live arcades that have it.
CREATE FUNCTION rn_public_game_json(p_game games)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p_game.id, 'name', p_game.name, 'description', p_game.description,
        'min_players', p_game.min_players, 'max_players', p_game.max_players,
        'ticket_cost', p_game.ticket_cost, 'active', p_game.active,
        'arcades', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'arcade_id', a.id, 'name', a.name, 'slot', ag.slot,
                                'status', a.status) ORDER BY a.id), '[]'::jsonb)
                    FROM arcade_games ag JOIN arcades a ON a.id = ag.arcade_id
                    WHERE ag.game_id = p_game.id AND a.deleted_at IS NULL))
$$;

-- GET /api/v1/games: the active games. 200 {"items":[...],"next_cursor":null}.
CREATE FUNCTION rn_games_list()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_answer(200, jsonb_build_object(
        'items', coalesce(jsonb_agg(rn_public_game_json(g) ORDER BY g.id), '[]'::jsonb),
        'next_cursor', NULL))
    FROM games g
    WHERE g.active
$$;

-- GET /api/v1/games/{id}. 200 {"game": {...}} or 404.
CREATE FUNCTION rn_game_get(p_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT rn_answer(200, jsonb_build_object('game', rn_public_game_json(g)))
         FROM games g WHERE g.id = p_id),
        rn_error(404, 'game_not_found', format('no game %s', p_id)))
$$;
