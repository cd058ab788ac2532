-- 0008_queue_speed: the same queue transitions, faster (no change of
-- signature, answer, event, error, lock order or idempotency).
--
-- Where the time went (tests/bench/reserve_pgbench.sh: one rn_reserve + one
-- rn_cancel cost 3.6-7 ms on one connection):
--   * The small LANGUAGE sql helpers (rn_avg_game_s, rn_players, rn_position,
--     rn_event_json, rn_user_id, rn_answer) cannot be inlined (they have a
--     FROM, a sub-select, or, for rn_answer/rn_error, an IMMUTABLE label over
--     the STABLE jsonb_build_object), so PostgreSQL 15 parses and plans their
--     body again at every call: pg_stat_statements showed plans = calls, and
--     planning alone was ~0.75 ms of every pair. PL/pgSQL keeps its plans for
--     the session: the helpers are PL/pgSQL now, and the hot paths do not
--     call them at all.
--   * The same things were computed again and again in one transaction:
--     the rolling mean game length 6 times per pair (position events,
--     reservation body, snapshot), the players' pseudos per call, the arcade
--     row, the reservation's position, the user's uid for every event.
--   * One INSERT, two function calls and a uid lookup per private event
--     (5 per reserve + cancel).
--   * rn_called_code (the cabinet's unlock) ~0.35-0.5 ms: its body (inlined
--     into the hub's unnamed statement) and rn_unlock_locked_for_s were
--     parsed and planned at every call.
--
-- How: internal helpers (suffix _x) that take what the caller already knows:
--   rn_queue_snapshot_x(arcade row, avg)  the snapshot in one statement
--   rn_reservation_json_x(row, avg, pos)  the REST body of a reservation
--   rn_step_events_x(users[], kinds[], payloads[], arcade, after, avg)
--       a step's own events and its position events, one INSERT ... SELECT
--   rn_users_events_x / rn_position_events_x  the two halves of it
-- and rn_reserve / rn_reserve_do / rn_cancel / rn_call_next rewritten on
-- them. The rolling mean only changes when a game completes (rn_game_over),
-- which none of reserve, cancel or call-next does, so computing it once per
-- transaction gives the same numbers. Every public function keeps its name,
-- arguments, result and meaning; the old ones that stay in use (rn_game_over,
-- rn_expire, rn_uncall, the cabinet functions, rn_admin_user_delete, ...)
-- get faster through the helpers they call.
--
-- Event order is kept: the rows of one INSERT ... SELECT ... ORDER BY get
-- their ids (the serial default) in that order, and every array lists them
-- by id, booker before player 2, as before.
--
-- Numbered 0008, not 0005: 0006 and 0007 were applied first, and the runner
-- (storage/migrate.c) refuses to fill a gap below the newest applied version.
-- Neither replaces a function of this file.

-- ---------------------------------------------------------------------------
-- 0002's helpers

-- jsonb_build_object is STABLE, so these two, labelled IMMUTABLE, could never
-- be inlined and were run as separate SQL functions (planned at every call).
-- Labelled STABLE (what they are), they inline into their callers' plans.
CREATE OR REPLACE FUNCTION rn_answer(p_status integer, p_body jsonb, p_events jsonb DEFAULT '[]')
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('status', p_status, 'body', p_body, 'events', p_events)
$$;

CREATE OR REPLACE FUNCTION rn_error(p_status integer, p_code text, p_message text,
                                    p_extra jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('status', p_status, 'events', '[]'::jsonb, 'body',
        jsonb_build_object('error',
            jsonb_build_object('code', p_code, 'message', p_message) || p_extra))
$$;

-- The id of a live (not deleted) user, or NULL. PL/pgSQL: a plan kept for
-- the session instead of one per call (the ack and resume queries of
-- hub/events.c call it too).
CREATE OR REPLACE FUNCTION rn_user_id(p_uid text)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_id bigint;
BEGIN
    SELECT id INTO v_id FROM users WHERE firebase_uid = p_uid AND deleted_at IS NULL;
    RETURN v_id;
END
$$;

-- An event row as hub/events.h expects it.
CREATE OR REPLACE FUNCTION rn_event_json(e user_events)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN jsonb_build_object(
        'id', e.id, 'kind', e.kind, 'payload', e.payload,
        'at_ms', (extract(epoch FROM e.created_at) * 1000)::bigint)
        || CASE WHEN e.user_id IS NOT NULL
                THEN jsonb_build_object('uid', (SELECT firebase_uid FROM users WHERE id = e.user_id))
                ELSE jsonb_build_object('arcade_id', e.arcade_id) END;
END
$$;

-- Writes private events, one per (user, kind, payload) of the three arrays
-- (same length; a NULL user is skipped), in array order: their ids follow
-- that order. Returns them as an array in id order, each as rn_event_json
-- makes it. The multi-row form of rn_user_event.
CREATE FUNCTION rn_users_events_x(p_users bigint[], p_kinds text[], p_payloads jsonb[])
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_events jsonb;
BEGIN
    WITH ins AS (
        INSERT INTO user_events (user_id, kind, payload, created_at)
        SELECT t.u, t.k, t.p, clock_timestamp()
        FROM unnest(p_users, p_kinds, p_payloads) WITH ORDINALITY AS t (u, k, p, n)
        WHERE t.u IS NOT NULL
        ORDER BY t.n
        RETURNING id, user_id, kind, payload, created_at)
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', ins.id, 'kind', ins.kind, 'payload', ins.payload,
               'at_ms', (extract(epoch FROM ins.created_at) * 1000)::bigint,
               'uid', u.firebase_uid) ORDER BY ins.id), '[]'::jsonb)
    INTO v_events
    FROM ins JOIN users u ON u.id = ins.user_id;
    RETURN v_events;
END
$$;

CREATE OR REPLACE FUNCTION rn_user_event(p_user_id bigint, p_kind text, p_payload jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_at timestamptz;
BEGIN
    INSERT INTO user_events (user_id, kind, payload, created_at)
    VALUES (p_user_id, p_kind, p_payload, clock_timestamp())
    RETURNING id, created_at INTO v_id, v_at;
    RETURN jsonb_build_object(
        'id', v_id, 'kind', p_kind, 'payload', p_payload,
        'at_ms', (extract(epoch FROM v_at) * 1000)::bigint,
        'uid', (SELECT firebase_uid FROM users WHERE id = p_user_id));
END
$$;

CREATE OR REPLACE FUNCTION rn_cabinet_event(p_arcade_id bigint, p_kind text, p_payload jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_at timestamptz;
BEGIN
    INSERT INTO user_events (arcade_id, kind, payload, created_at)
    VALUES (p_arcade_id, p_kind, p_payload, clock_timestamp())
    RETURNING id, created_at INTO v_id, v_at;
    RETURN jsonb_build_object(
        'id', v_id, 'kind', p_kind, 'payload', p_payload,
        'at_ms', (extract(epoch FROM v_at) * 1000)::bigint,
        'arcade_id', p_arcade_id);
END
$$;

-- ---------------------------------------------------------------------------
-- 0003's small helpers, as PL/pgSQL (same queries, plans kept)

CREATE OR REPLACE FUNCTION rn_avg_game_s(p_arcade_id bigint)
RETURNS integer LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_avg integer;
BEGIN
    SELECT CASE WHEN count(*) >= 3
                THEN greatest(1, round(avg(extract(epoch FROM t.ended_at - t.started_at))))::integer
                ELSE 180 END
    INTO v_avg
    FROM (SELECT r.started_at, r.ended_at
          FROM reservations r
          WHERE r.arcade_id = p_arcade_id AND r.status = 'completed'
            AND r.started_at IS NOT NULL AND r.ended_at IS NOT NULL
          ORDER BY r.ended_at DESC
          LIMIT 20) t;
    RETURN v_avg;
END
$$;

CREATE OR REPLACE FUNCTION rn_players(p_user_id bigint, p_player2_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_players jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(u.pseudo ORDER BY o.n), '[]'::jsonb)
    INTO v_players
    FROM (VALUES (1, p_user_id), (2, p_player2_id)) AS o (n, uid)
    JOIN users u ON u.id = o.uid;
    RETURN v_players;
END
$$;

CREATE OR REPLACE FUNCTION rn_position(p_res reservations)
RETURNS integer LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_pos integer;
BEGIN
    IF p_res.status IS DISTINCT FROM 'waiting' THEN
        RETURN NULL;
    END IF;
    SELECT count(*)::integer INTO v_pos FROM reservations w
    WHERE w.arcade_id = p_res.arcade_id AND w.status = 'waiting' AND w.id <= p_res.id;
    RETURN v_pos;
END
$$;

CREATE OR REPLACE FUNCTION rn_players_event(p_user_id bigint, p_player2_id bigint, p_kind text,
                                            p_payload jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN rn_users_events_x(ARRAY[p_user_id, p_player2_id], ARRAY[p_kind, p_kind],
                             ARRAY[p_payload, p_payload]);
END
$$;

-- ---------------------------------------------------------------------------
-- The public snapshot

-- rn_queue_snapshot for an arcade row the caller already holds (as it is
-- now, queue_version included) and its rolling mean game length p_avg
-- (rn_avg_game_s). NULL for a deleted arcade. Players by pseudo only.
-- At most one reservation of an arcade is called or playing (the unique
-- index reservations_one_active_per_arcade): one query finds it.
CREATE FUNCTION rn_queue_snapshot_x(a arcades, p_avg integer)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_snapshot jsonb;
BEGIN
    IF a.id IS NULL OR a.deleted_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_build_object(
               'type', 'queue', 'arcade_id', a.id, 'v', a.queue_version, 'name', a.name,
               'status', a.status,
               'called', CASE WHEN act.status = 'called' THEN act.obj END,
               'playing', CASE WHEN act.status = 'playing' THEN act.obj END,
               'waiting', wl.list, 'avg_game_s', p_avg, 'eta_is_estimate', true)
    INTO v_snapshot
    FROM (SELECT coalesce(jsonb_agg(jsonb_build_object(
                     'reservation_id', w.id, 'position', w.pos, 'game_id', w.game_id,
                     'game', g.name,
                     'players', CASE WHEN w.player2_id IS NULL
                                     THEN jsonb_build_array(u1.pseudo)
                                     ELSE jsonb_build_array(u1.pseudo, u2.pseudo) END,
                     'eta_s', w.pos * p_avg)
                     ORDER BY w.id), '[]'::jsonb) AS list
          FROM (SELECT r.id, r.game_id, r.user_id, r.player2_id,
                       row_number() OVER (ORDER BY r.id) AS pos
                FROM reservations r
                WHERE r.arcade_id = a.id AND r.status = 'waiting') w
          JOIN games g ON g.id = w.game_id
          JOIN users u1 ON u1.id = w.user_id
          LEFT JOIN users u2 ON u2.id = w.player2_id) wl
    LEFT JOIN LATERAL (
          SELECT r.status,
                 jsonb_build_object('reservation_id', r.id, 'game_id', r.game_id,
                                    'game', g.name, 'slot', ag.slot,
                                    'players', CASE WHEN r.player2_id IS NULL
                                                    THEN jsonb_build_array(u1.pseudo)
                                                    ELSE jsonb_build_array(u1.pseudo, u2.pseudo) END)
                 || CASE WHEN r.status = 'called'
                         THEN jsonb_build_object('deadline_ms', rn_ms(r.deadline))
                         ELSE jsonb_build_object('started_ms', rn_ms(r.started_at)) END AS obj
          FROM reservations r
          JOIN games g ON g.id = r.game_id
          JOIN users u1 ON u1.id = r.user_id
          LEFT JOIN users u2 ON u2.id = r.player2_id
          LEFT JOIN arcade_games ag ON ag.arcade_id = r.arcade_id AND ag.game_id = r.game_id
          WHERE r.arcade_id = a.id AND r.status IN ('called', 'playing')) act ON true;
    RETURN v_snapshot;
END
$$;

CREATE OR REPLACE FUNCTION rn_queue_snapshot(p_arcade_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    a arcades;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN rn_queue_snapshot_x(a, rn_avg_game_s(a.id));
END
$$;

-- rn_answer plus the snapshot, built in one go (same keys, same values).
CREATE OR REPLACE FUNCTION rn_queue_answer(p_status integer, p_body jsonb, p_events jsonb,
                                           p_arcade_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('status', p_status, 'body', p_body, 'events', p_events,
                              'arcade', rn_queue_snapshot(p_arcade_id))
$$;

-- ---------------------------------------------------------------------------
-- Position events and the reservation body

-- rn_position_events with the arcade's rolling mean game length given: one
-- INSERT for all of them (by reservation id, booker before player 2).
CREATE FUNCTION rn_position_events_x(p_arcade_id bigint, p_after_id bigint, p_avg integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_events jsonb;
BEGIN
    WITH ins AS (
        INSERT INTO user_events (user_id, kind, payload, created_at)
        SELECT p.uid, 'position',
               jsonb_build_object('reservation_id', t.id, 'arcade_id', p_arcade_id,
                                  'position', t.pos, 'eta_s', t.pos * p_avg,
                                  'eta_is_estimate', true),
               clock_timestamp()
        FROM (SELECT r.id, r.user_id, r.player2_id,
                     row_number() OVER (ORDER BY r.id)::integer AS pos
              FROM reservations r
              WHERE r.arcade_id = p_arcade_id AND r.status = 'waiting') t
        CROSS JOIN LATERAL (VALUES (1, t.user_id), (2, t.player2_id)) AS p (n, uid)
        WHERE t.id > p_after_id AND p.uid IS NOT NULL
        ORDER BY t.id, p.n
        RETURNING id, user_id, kind, payload, created_at)
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', ins.id, 'kind', ins.kind, 'payload', ins.payload,
               'at_ms', (extract(epoch FROM ins.created_at) * 1000)::bigint,
               'uid', u.firebase_uid) ORDER BY ins.id), '[]'::jsonb)
    INTO v_events
    FROM ins JOIN users u ON u.id = ins.user_id;
    RETURN v_events;
END
$$;

-- A step's own events (rn_users_events_x's arrays) followed by the position
-- events rn_position_events_x(p_arcade_id, p_after_id, p_avg) would write:
-- the same rows in the same order, in one INSERT.
CREATE FUNCTION rn_step_events_x(p_users bigint[], p_kinds text[], p_payloads jsonb[],
                                 p_arcade_id bigint, p_after_id bigint, p_avg integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_events jsonb;
BEGIN
    WITH ins AS (
        INSERT INTO user_events (user_id, kind, payload, created_at)
        SELECT e.uid, e.kind, e.payload, clock_timestamp()
        FROM (SELECT 0 AS part, t.n AS k1, 0 AS k2, t.u AS uid, t.k AS kind, t.p AS payload
              FROM unnest(p_users, p_kinds, p_payloads) WITH ORDINALITY AS t (u, k, p, n)
              UNION ALL
              SELECT 1, w.id, p.n, p.uid, 'position',
                     jsonb_build_object('reservation_id', w.id, 'arcade_id', p_arcade_id,
                                        'position', w.pos, 'eta_s', w.pos * p_avg,
                                        'eta_is_estimate', true)
              FROM (SELECT r.id, r.user_id, r.player2_id,
                           row_number() OVER (ORDER BY r.id)::integer AS pos
                    FROM reservations r
                    WHERE r.arcade_id = p_arcade_id AND r.status = 'waiting') w
              CROSS JOIN LATERAL (VALUES (1, w.user_id), (2, w.player2_id)) AS p (n, uid)
              WHERE w.id > p_after_id) e
        WHERE e.uid IS NOT NULL
        ORDER BY e.part, e.k1, e.k2
        RETURNING id, user_id, kind, payload, created_at)
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', ins.id, 'kind', ins.kind, 'payload', ins.payload,
               'at_ms', (extract(epoch FROM ins.created_at) * 1000)::bigint,
               'uid', u.firebase_uid) ORDER BY ins.id), '[]'::jsonb)
    INTO v_events
    FROM ins JOIN users u ON u.id = ins.user_id;
    RETURN v_events;
END
$$;

CREATE OR REPLACE FUNCTION rn_position_events(p_arcade_id bigint, p_after_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN rn_position_events_x(p_arcade_id, p_after_id, rn_avg_game_s(p_arcade_id));
END
$$;

-- rn_reservation_json with the arcade's rolling mean game length and the
-- reservation's position (rn_position) given when the caller knows them
-- (NULL: looked up, and only when needed, i.e. for a waiting reservation).
CREATE FUNCTION rn_reservation_json_x(p_res reservations, p_avg integer, p_pos integer)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_pos integer;
    v_body jsonb;
BEGIN
    IF p_res.status = 'waiting' THEN
        v_pos := p_pos;
        IF v_pos IS NULL THEN
            SELECT count(*)::integer INTO v_pos FROM reservations w
            WHERE w.arcade_id = p_res.arcade_id AND w.status = 'waiting' AND w.id <= p_res.id;
        END IF;
        IF p_avg IS NULL THEN
            p_avg := rn_avg_game_s(p_res.arcade_id);
        END IF;
    END IF;
    SELECT jsonb_build_object(
               'id', p_res.id, 'arcade_id', p_res.arcade_id, 'arcade', a.name,
               'game_id', p_res.game_id, 'game', g.name, 'slot', ag.slot,
               'status', p_res.status, 'position', v_pos,
               'eta_s', v_pos * p_avg,
               'eta_is_estimate', true, 'cost', p_res.cost,
               'players', CASE WHEN p_res.player2_id IS NULL
                               THEN jsonb_build_array(u1.pseudo)
                               ELSE jsonb_build_array(u1.pseudo, u2.pseudo) END,
               'created_at', p_res.created_at, 'called_at', p_res.called_at,
               'deadline', p_res.deadline, 'deadline_ms', rn_ms(p_res.deadline),
               'started_at', p_res.started_at, 'ended_at', p_res.ended_at)
    INTO v_body
    FROM arcades a, games g
    LEFT JOIN arcade_games ag ON ag.arcade_id = p_res.arcade_id AND ag.game_id = g.id
    JOIN users u1 ON u1.id = p_res.user_id
    LEFT JOIN users u2 ON u2.id = p_res.player2_id
    WHERE a.id = p_res.arcade_id AND g.id = p_res.game_id;
    IF p_res.status = 'completed' THEN
        v_body := v_body || jsonb_build_object('result', rn_game_result(p_res));
    END IF;
    RETURN v_body;
END
$$;

CREATE OR REPLACE FUNCTION rn_reservation_json(p_res reservations)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN rn_reservation_json_x(p_res, NULL, NULL);
END
$$;

-- ---------------------------------------------------------------------------
-- Call the next one

CREATE OR REPLACE FUNCTION rn_call_next(p_arcade_id bigint, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_game text;
    v_slot integer;
    v_avg integer;
    v_turn jsonb;
    v_called jsonb;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id;
    IF NOT FOUND OR a.deleted_at IS NOT NULL OR a.status <> 'idle' THEN
        RETURN '[]'::jsonb;
    END IF;
    IF EXISTS (SELECT 1 FROM reservations
               WHERE arcade_id = a.id AND status IN ('called', 'playing')) THEN
        RETURN '[]'::jsonb;
    END IF;
    SELECT * INTO r FROM reservations
    WHERE arcade_id = a.id AND status = 'waiting'
    ORDER BY id LIMIT 1
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN '[]'::jsonb;
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

    v_turn := jsonb_build_object(
        'reservation_id', r.id, 'arcade_id', a.id, 'arcade', a.name,
        'code', r.unlock_code, 'deadline_ms', rn_ms(r.deadline),
        'game_id', r.game_id, 'game', v_game, 'slot', v_slot);
    v_called := jsonb_build_object(
        'reservation_id', r.id, 'arcade_id', a.id, 'game_id', r.game_id,
        'status', 'called', 'deadline_ms', rn_ms(r.deadline));
    v_avg := rn_avg_game_s(a.id);
    RETURN rn_users_events_x(ARRAY[r.user_id, r.player2_id, r.user_id, r.player2_id],
                             ARRAY['your_turn', 'your_turn', 'reservation', 'reservation'],
                             ARRAY[v_turn, v_turn, v_called, v_called])
        || jsonb_build_array(rn_cabinet_event(a.id, 'cabinet_queue',
                                              rn_queue_snapshot_x(a, v_avg) - 'type'))
        || rn_position_events_x(a.id, r.id, v_avg);
END
$$;

-- ---------------------------------------------------------------------------
-- The cabinet's unlock (rn_called_code, rn_unlock_result)

-- Same query as 0003's, as PL/pgSQL (it was planned at every call).
CREATE OR REPLACE FUNCTION rn_unlock_locked_for_s(p_arcade_id bigint)
RETURNS integer LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_locked integer;
BEGIN
    SELECT coalesce(max(greatest(0, ceil(extract(epoch FROM
               f.created_at + interval '60 seconds' - now())))::integer), 0)
    INTO v_locked
    FROM (SELECT u.created_at FROM unlock_failures u
          WHERE u.arcade_id = p_arcade_id AND u.created_at > now() - interval '5 minutes'
          ORDER BY u.created_at DESC
          LIMIT 1) f
    WHERE (SELECT count(*) FROM unlock_failures u2
           WHERE u2.arcade_id = p_arcade_id
             AND u2.created_at > f.created_at - interval '5 minutes'
             AND u2.created_at <= f.created_at) >= 5;
    RETURN v_locked;
END
$$;

-- Same answer as 0003's (one row for a live arcade, none for an unknown or
-- deleted one). As LANGUAGE sql it was inlined into the hub's unnamed
-- statement, so its body was parsed and planned again at every unlock.
CREATE OR REPLACE FUNCTION rn_called_code(p_arcade_id bigint)
RETURNS TABLE (reservation_id bigint, unlock_code text, locked_for_s integer)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT r.id, r.unlock_code, rn_unlock_locked_for_s(a.id)
    FROM arcades a
    LEFT JOIN reservations r ON r.arcade_id = a.id AND r.status = 'called'
    WHERE a.id = p_arcade_id AND a.deleted_at IS NULL;
END
$$;

-- ---------------------------------------------------------------------------
-- Reserve and cancel

CREATE OR REPLACE FUNCTION rn_reserve_do(p_user_id bigint, p_arcade_id bigint, p_game_id bigint,
                                         p_player2_uid text, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_game_name text;
    v_min integer;
    v_max integer;
    v_cost integer;
    v_p2 bigint;
    v_players integer;
    v_balance integer;
    v_pos integer;
    v_avg integer;
    v_reservation jsonb;
    v_events jsonb;
    v_called jsonb;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    IF a.status = 'maintenance' THEN
        RETURN rn_error(409, 'arcade_unavailable',
                        format('arcade %s is in maintenance; try again later', a.id));
    END IF;
    SELECT g0.name, g0.min_players, g0.max_players, g0.ticket_cost
    INTO v_game_name, v_min, v_max, v_cost
    FROM games g0
    JOIN arcade_games ag ON ag.game_id = g0.id AND ag.arcade_id = a.id
    WHERE g0.id = p_game_id AND g0.active;
    IF NOT FOUND THEN
        RETURN rn_error(422, 'game_not_on_arcade',
                        format('game %s is not available on arcade %s', p_game_id, a.id));
    END IF;

    IF p_player2_uid IS NOT NULL THEN
        SELECT id INTO v_p2 FROM users WHERE firebase_uid = p_player2_uid AND deleted_at IS NULL;
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
    IF v_players < v_min OR v_players > v_max THEN
        RETURN rn_error(422, 'wrong_player_count',
                        format('%s is for %s to %s players; this reservation has %s',
                               v_game_name, v_min, v_max, v_players),
                        jsonb_build_object('min_players', v_min, 'max_players', v_max));
    END IF;

    IF EXISTS (SELECT 1 FROM reservations
               WHERE arcade_id = a.id AND status IN ('waiting', 'called', 'playing')
                 AND (user_id = p_user_id OR player2_id = p_user_id)) THEN
        RETURN rn_error(409, 'already_queued',
                        format('you are already in the queue of arcade %s', a.id));
    END IF;
    IF v_p2 IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM reservations
                   WHERE arcade_id = a.id AND status IN ('waiting', 'called', 'playing')
                     AND (user_id = v_p2 OR player2_id = v_p2)) THEN
            RETURN rn_error(409, 'already_queued',
                            format('player 2 is already in the queue of arcade %s', a.id));
        END IF;
    END IF;

    -- Under the user rows' locks again: an admin deleting the booker or player 2
    -- (0006, arcade rows then user rows, as here) commits first or waits for us.
    SELECT tickets_balance INTO v_balance FROM users
     WHERE id = p_user_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'not_registered', 'register first (POST /api/v1/auth/register)');
    END IF;
    IF v_p2 IS NOT NULL THEN
        PERFORM 1 FROM users WHERE id = v_p2 AND deleted_at IS NULL FOR SHARE;
        IF NOT FOUND THEN
            RETURN rn_error(422, 'not_a_friend', 'player 2 must be one of your accepted friends');
        END IF;
    END IF;
    IF v_balance < v_cost THEN
        RETURN rn_error(409, 'insufficient_tickets',
                        format('%s costs %s tickets; your balance is %s',
                               v_game_name, v_cost, v_balance),
                        jsonb_build_object('balance', v_balance, 'cost', v_cost));
    END IF;

    -- Every check passed: from here on, change things.
    UPDATE arcades SET queue_version = queue_version + 1 WHERE id = a.id
    RETURNING * INTO a;
    INSERT INTO reservations (arcade_id, game_id, user_id, player2_id, unlock_code, cost)
    VALUES (a.id, p_game_id, p_user_id, v_p2, rn_unlock_code(), v_cost)
    RETURNING * INTO r;
    UPDATE users SET tickets_balance = tickets_balance - v_cost
     WHERE id = p_user_id
    RETURNING tickets_balance INTO v_balance;
    INSERT INTO ledger (user_id, delta, balance_after, kind, reservation_id)
    VALUES (p_user_id, -v_cost, v_balance, 'reservation', r.id);

    SELECT count(*)::integer INTO v_pos FROM reservations w
    WHERE w.arcade_id = a.id AND w.status = 'waiting' AND w.id <= r.id;
    v_avg := rn_avg_game_s(a.id);
    v_reservation := jsonb_build_object(
        'reservation_id', r.id, 'arcade_id', a.id, 'game_id', p_game_id,
        'status', 'waiting', 'position', v_pos);
    v_events := rn_step_events_x(
        ARRAY[p_user_id, r.user_id, r.player2_id],
        ARRAY['balance', 'reservation', 'reservation'],
        ARRAY[jsonb_build_object('balance', v_balance, 'delta', -v_cost,
                                 'reason', 'reservation', 'reservation_id', r.id),
              v_reservation, v_reservation],
        a.id, r.id - 1, v_avg);
    -- rn_call_next calls only on an idle arcade (this row is locked, and
    -- nothing here changed its status).
    IF a.status = 'idle' THEN
        v_called := rn_call_next(a.id, p_deadline_s);
        IF jsonb_array_length(v_called) > 0 THEN
            v_events := v_events || v_called;
            SELECT * INTO r FROM reservations WHERE id = r.id; -- called already, perhaps
            v_pos := NULL; -- and if not, one ahead of it was
        END IF;
    END IF;

    RETURN jsonb_build_object(
        'status', 201,
        'body', jsonb_build_object('reservation', rn_reservation_json_x(r, v_avg, v_pos),
                                   'balance', v_balance),
        'events', v_events,
        'arcade', rn_queue_snapshot_x(a, v_avg));
END
$$;

CREATE OR REPLACE FUNCTION rn_reserve(p_uid text, p_arcade_id bigint, p_game_id bigint,
                                      p_player2_uid text, p_idem_key text, p_req_hash text,
                                      p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_user bigint;
    v_replay jsonb;
BEGIN
    SELECT id INTO v_user FROM users WHERE firebase_uid = p_uid AND deleted_at IS NULL;
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

CREATE OR REPLACE FUNCTION rn_cancel(p_uid text, p_reservation_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_user bigint;
    v_arcade bigint;
    a arcades;
    r reservations;
    v_balance integer;
    v_avg integer;
    v_cancelled jsonb;
    v_events jsonb;
BEGIN
    SELECT id INTO v_user FROM users WHERE firebase_uid = p_uid AND deleted_at IS NULL;
    IF v_user IS NULL THEN
        RETURN rn_error(404, 'not_registered', 'register first (POST /api/v1/auth/register)');
    END IF;
    SELECT arcade_id INTO v_arcade FROM reservations WHERE id = p_reservation_id;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'reservation_not_found', 'no such reservation');
    END IF;
    SELECT * INTO a FROM arcades WHERE id = v_arcade FOR UPDATE;
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

    UPDATE arcades SET queue_version = queue_version + 1 WHERE id = v_arcade
    RETURNING * INTO a;
    UPDATE reservations SET status = 'cancelled', ended_at = now()
     WHERE id = r.id
    RETURNING * INTO r;
    UPDATE users SET tickets_balance = tickets_balance + r.cost
     WHERE id = r.user_id
    RETURNING tickets_balance INTO v_balance;
    INSERT INTO ledger (user_id, delta, balance_after, kind, reservation_id)
    VALUES (r.user_id, r.cost, v_balance, 'refund', r.id);

    v_avg := rn_avg_game_s(v_arcade);
    v_cancelled := jsonb_build_object(
        'reservation_id', r.id, 'arcade_id', r.arcade_id, 'game_id', r.game_id,
        'status', 'cancelled');
    v_events := rn_step_events_x(
        ARRAY[r.user_id, r.user_id, r.player2_id],
        ARRAY['balance', 'reservation', 'reservation'],
        ARRAY[jsonb_build_object('balance', v_balance, 'delta', r.cost, 'reason', 'refund',
                                 'reservation_id', r.id),
              v_cancelled, v_cancelled],
        v_arcade, r.id, v_avg);
    RETURN jsonb_build_object(
        'status', 200,
        'body', jsonb_build_object('reservation', rn_reservation_json_x(r, NULL, NULL),
                                   'balance', v_balance, 'refunded', r.cost),
        'events', v_events,
        'arcade', rn_queue_snapshot_x(a, v_avg));
END
$$;
