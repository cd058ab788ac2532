-- 05_admin: what only an admin token reaches (hub/api_admin.c,
-- hub/api_social.c): promo codes, ticket adjustments, the game and arcade
-- catalogue, cabinet API keys and slots, soft delete / restore of users.
--
-- Layout (storage/sql/README.md): every SQL function of the hub lives in
-- exactly one domain file, as CREATE OR REPLACE; the runner (storage/migrate.c)
-- applies a file again whenever its content changes, after the migrations, in
-- their transaction, in file-name order (01 .. 05). Tables, indexes and data
-- changes stay in storage/migrations. A LANGUAGE sql body is checked when it
-- is created, so it may only call functions of this file defined above it or
-- of a file applied earlier; PL/pgSQL binds late and may call anything.
-- A function removed from here must be DROPped by a new migration.
--
-- Balances move only through rn_ledger_post (02_tickets): an adjustment is a
-- ledger row of kind 'adjustment' with the admin as actor; deleting a user
-- cancels its waiting reservations through rn_cancel (03_queue), which
-- refunds them through rn_reservation_refund.

-- ---------------------------------------------------------------------------
-- Admin
CREATE OR REPLACE FUNCTION rn_promo_json(c promo_codes)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', c.id, 'code', c.code, 'tickets', c.tickets, 'max_uses', c.max_uses,
        'uses', c.uses, 'valid_from', c.valid_from, 'valid_until', c.valid_until,
        'active', c.active, 'created_at', c.created_at)
$$;

-- POST /admin/promo-codes {code, tickets, max_uses?, valid_from?,
-- valid_until?, active?}
CREATE OR REPLACE FUNCTION rn_admin_promo_create(p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c promo_codes;
    v_code text;
    v_tickets integer;
    v_max integer;
    v_from timestamptz;
    v_until timestamptz;
    v_active boolean;
BEGIN
    BEGIN
        v_code := upper(btrim(rn_body_field(p_body, 'code', 'string')));
        v_tickets := rn_body_field(p_body, 'tickets', 'number')::integer;
        v_max := rn_body_field(p_body, 'max_uses', 'number')::integer;
        v_from := coalesce(rn_body_field(p_body, 'valid_from', 'string')::timestamptz, now());
        v_until := rn_body_field(p_body, 'valid_until', 'string')::timestamptz;
        v_active := coalesce(rn_body_field(p_body, 'active', 'boolean')::boolean, true);
    EXCEPTION WHEN invalid_parameter_value OR invalid_text_representation
                   OR invalid_datetime_format OR datetime_field_overflow
                   OR numeric_value_out_of_range THEN
        RETURN rn_error(400, 'bad_request', SQLERRM);
    END;
    IF v_code IS NULL OR v_code !~ '^[A-Z0-9_-]{3,64}$' THEN
        RETURN rn_error(422, 'invalid_code', 'code: 3 to 64 letters, digits, "_" or "-"');
    END IF;
    IF v_tickets IS NULL OR v_tickets NOT BETWEEN 1 AND 100000 THEN
        RETURN rn_error(422, 'invalid_tickets', 'tickets: 1 to 100000');
    END IF;
    IF v_max IS NOT NULL AND v_max < 1 THEN
        RETURN rn_error(422, 'invalid_max_uses', 'max_uses: at least 1 (omit for unlimited)');
    END IF;
    IF v_until IS NOT NULL AND v_until <= v_from THEN
        RETURN rn_error(422, 'invalid_window', 'valid_until must be after valid_from');
    END IF;
    INSERT INTO promo_codes (code, tickets, max_uses, valid_from, valid_until, active)
    VALUES (v_code, v_tickets, v_max, v_from, v_until, v_active)
    ON CONFLICT (code) DO NOTHING
    RETURNING * INTO c;
    IF NOT FOUND THEN
        RETURN rn_error(409, 'promo_code_taken', 'a promo code with this code exists');
    END IF;
    RETURN rn_answer(201, jsonb_build_object('promo_code', rn_promo_json(c)));
END
$$;

-- GET /admin/promo-codes: every code with its use count, newest first.
CREATE OR REPLACE FUNCTION rn_admin_promo_list(p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_answer(200, rn_page(
        (SELECT coalesce(jsonb_agg(rn_promo_json(c) || jsonb_build_object(
                    'use_count', (SELECT count(*) FROM promo_uses u WHERE u.promo_id = c.id))
                    ORDER BY c.id DESC), '[]'::jsonb)
           FROM (SELECT * FROM promo_codes
                  WHERE p_cursor IS NULL OR id < p_cursor
                  ORDER BY id DESC LIMIT p_limit + 1) c),
        p_limit))
$$;

-- PUT /admin/users/{uid}/tickets {delta, reason}: an 'adjustment' ledger row.
-- The Idempotency-Key is scoped to the admin's own profile.
CREATE OR REPLACE FUNCTION rn_admin_adjust_tickets(p_admin_uid text, p_key text, p_hash text,
                                        p_target_uid text, p_delta integer, p_reason text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_admin bigint := rn_user_id(p_admin_uid);
    v_target bigint := rn_user_id(p_target_uid);
    v_answer jsonb;
    v_post jsonb;
BEGIN
    IF p_key IS NOT NULL AND v_admin IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    v_answer := rn_idem_begin(v_admin, p_key, p_hash);
    IF v_answer IS NOT NULL THEN
        RETURN v_answer;
    END IF;
    IF v_target IS NULL THEN
        v_answer := rn_error(404, 'user_not_found', 'no such user');
    ELSIF p_delta IS NULL OR p_delta = 0 OR abs(p_delta) > 1000000 THEN
        v_answer := rn_error(422, 'invalid_delta', 'delta: a non-zero integer within +-1000000');
    ELSIF char_length(btrim(coalesce(p_reason, ''))) NOT BETWEEN 1 AND 200 THEN
        v_answer := rn_error(422, 'invalid_reason', 'reason: 1 to 200 characters');
    ELSE
        v_post := rn_ledger_post(v_target, p_delta, 'adjustment', p_reason => btrim(p_reason),
                                 p_actor_uid => p_admin_uid);
        IF v_post IS NULL THEN
            v_answer := rn_error(409, 'insufficient_tickets',
                                 'the adjustment would take the balance below zero',
                                 jsonb_build_object('balance', (SELECT tickets_balance FROM users
                                                                 WHERE id = v_target)));
        ELSE
            v_answer := rn_answer(200, jsonb_build_object(
                            'uid', p_target_uid, 'delta', p_delta, 'balance', v_post->'balance',
                            'ledger_id', v_post->'ledger_id'),
                            jsonb_build_array(v_post->'event'))
                || jsonb_build_object('admin_event', jsonb_build_object(
                       'kind', 'adjustment', 'uid', p_target_uid, 'delta', p_delta,
                       'balance', v_post->'balance', 'reason', btrim(p_reason),
                       'by', p_admin_uid));
        END IF;
    END IF;
    IF v_admin IS NULL THEN
        RETURN v_answer;
    END IF;
    RETURN rn_idem_finish(v_admin, p_key, v_answer);
END
$$;

CREATE OR REPLACE FUNCTION rn_game_json(g games)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', g.id, 'name', g.name, 'description', g.description,
        'min_players', g.min_players, 'max_players', g.max_players,
        'ticket_cost', g.ticket_cost, 'active', g.active)
$$;

-- POST /admin/games {name, ticket_cost, description?, min_players?,
-- max_players?, active?}
CREATE OR REPLACE FUNCTION rn_admin_game_create(p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    g games;
    v_name text;
    v_description text;
    v_min integer;
    v_max integer;
    v_cost integer;
    v_active boolean;
BEGIN
    BEGIN
        v_name := btrim(rn_body_field(p_body, 'name', 'string'));
        v_description := coalesce(rn_body_field(p_body, 'description', 'string'), '');
        v_min := coalesce(rn_body_field(p_body, 'min_players', 'number')::integer, 1);
        v_max := coalesce(rn_body_field(p_body, 'max_players', 'number')::integer, v_min);
        v_cost := rn_body_field(p_body, 'ticket_cost', 'number')::integer;
        v_active := coalesce(rn_body_field(p_body, 'active', 'boolean')::boolean, true);
    EXCEPTION WHEN invalid_parameter_value OR invalid_text_representation
                   OR numeric_value_out_of_range THEN
        RETURN rn_error(400, 'bad_request', SQLERRM);
    END;
    IF char_length(coalesce(v_name, '')) NOT BETWEEN 1 AND 100 THEN
        RETURN rn_error(422, 'invalid_name', 'name: 1 to 100 characters');
    END IF;
    IF v_cost IS NULL OR v_cost NOT BETWEEN 1 AND 1000 THEN
        RETURN rn_error(422, 'invalid_ticket_cost', 'ticket_cost: 1 to 1000');
    END IF;
    IF v_min NOT BETWEEN 1 AND 2 OR v_max NOT BETWEEN 1 AND 2 OR v_min > v_max THEN
        RETURN rn_error(422, 'invalid_players', 'players: 1 <= min_players <= max_players <= 2');
    END IF;
    INSERT INTO games (name, description, min_players, max_players, ticket_cost, active)
    VALUES (v_name, v_description, v_min, v_max, v_cost, v_active)
    ON CONFLICT (name) DO NOTHING
    RETURNING * INTO g;
    IF NOT FOUND THEN
        RETURN rn_error(409, 'game_name_taken', 'a game with this name exists');
    END IF;
    RETURN rn_answer(201, jsonb_build_object('game', rn_game_json(g)));
END
$$;

CREATE OR REPLACE FUNCTION rn_arcade_json(a arcades)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', a.id, 'name', a.name, 'location', a.location,
                              'status', a.status, 'created_at', a.created_at)
$$;

-- POST /admin/arcades {name, location?}. The hub took p_id from the arcades
-- sequence and made the key for it: the row is born with the key's hash, and
-- the key itself never reaches the database.
CREATE OR REPLACE FUNCTION rn_admin_arcade_create(p_id bigint, p_key_hash text, p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    v_name text;
    v_location text;
BEGIN
    BEGIN
        v_name := btrim(rn_body_field(p_body, 'name', 'string'));
        v_location := coalesce(btrim(rn_body_field(p_body, 'location', 'string')), '');
    EXCEPTION WHEN invalid_parameter_value THEN
        RETURN rn_error(400, 'bad_request', SQLERRM);
    END;
    IF char_length(coalesce(v_name, '')) NOT BETWEEN 1 AND 100 THEN
        RETURN rn_error(422, 'invalid_name', 'name: 1 to 100 characters');
    END IF;
    IF char_length(v_location) > 200 THEN
        RETURN rn_error(422, 'invalid_location', 'location: at most 200 characters');
    END IF;
    INSERT INTO arcades (id, name, location, api_key_hash, status)
    VALUES (p_id, v_name, v_location, p_key_hash, 'offline')
    RETURNING * INTO a;
    RETURN rn_answer(201, jsonb_build_object('arcade', rn_arcade_json(a)))
        || jsonb_build_object('admin_event', jsonb_build_object('kind', 'arcade_created',
                                                                'arcade_id', a.id));
END
$$;

-- POST /admin/arcades/{id}/rotate-key: the old key stops working at commit.
CREATE OR REPLACE FUNCTION rn_admin_arcade_rotate_key(p_id bigint, p_key_hash text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
BEGIN
    UPDATE arcades SET api_key_hash = p_key_hash WHERE id = p_id AND deleted_at IS NULL
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', 'no such arcade');
    END IF;
    RETURN rn_answer(200, jsonb_build_object('arcade', rn_arcade_json(a)))
        || jsonb_build_object('admin_event', jsonb_build_object('kind', 'arcade_key_rotated',
                                                                'arcade_id', a.id));
END
$$;

-- POST /admin/arcades/{id}/games {game_id, slot}
CREATE OR REPLACE FUNCTION rn_admin_arcade_add_game(p_arcade_id bigint, p_game_id bigint, p_slot integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_constraint text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL) THEN
        RETURN rn_error(404, 'arcade_not_found', 'no such arcade');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM games WHERE id = p_game_id) THEN
        RETURN rn_error(404, 'game_not_found', 'no such game');
    END IF;
    IF p_slot IS NULL OR p_slot NOT BETWEEN 1 AND 64 THEN
        RETURN rn_error(422, 'invalid_slot', 'slot: 1 to 64');
    END IF;
    BEGIN
        INSERT INTO arcade_games (arcade_id, game_id, slot) VALUES (p_arcade_id, p_game_id, p_slot);
    EXCEPTION WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
        IF v_constraint = 'arcade_games_game_once' THEN
            RETURN rn_error(409, 'game_already_on_arcade', 'this game is already on this arcade');
        END IF;
        RETURN rn_error(409, 'slot_taken', 'this slot of the arcade is taken');
    END;
    RETURN rn_answer(201, jsonb_build_object('arcade_id', p_arcade_id, 'game_id', p_game_id,
                                             'slot', p_slot));
END
$$;

-- DELETE /admin/users/{uid}: soft delete (deleted_at). In the same
-- transaction its waiting reservations, booked or as player 2, are
-- cancelled by rn_cancel itself (03_queue: the refund through
-- rn_reservation_refund, its ledger row, the events, the position pushes and
-- the snapshot are the queue's own), in the name of their booker, who gets
-- the refund. A called or playing reservation cannot be cancelled (DESIGN.md):
-- 409 has_active_reservations {reservation_ids}, nothing changed; try again
-- once the game is over or expired. 404 user_not_found, 409 already_deleted,
-- 422 cannot_delete_self. 200 {uid, deleted_at, cancelled_reservations},
-- events of the cancels, "arcades": the snapshot of each arcade whose queue
-- changed (the hub publishes them), and an admin_event.
--
-- Lock order is the queue's (arcade, then user): the arcades of the user's
-- live reservations first, so none of them can be called meanwhile, the user
-- row last. A reservation whose rn_reserve is still running when the delete
-- commits is not seen here and stays waiting (a second DELETE is 409
-- already_deleted; restore + delete cancels it).
CREATE OR REPLACE FUNCTION rn_admin_user_delete(p_admin_uid text, p_target_uid text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    u users;
    r reservations;
    v_active jsonb;
    v_answer jsonb;
    v_events jsonb := '[]';
    v_arcades jsonb := '[]';
    v_cancelled jsonb := '[]';
BEGIN
    SELECT * INTO u FROM users WHERE firebase_uid = p_target_uid;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'user_not_found', 'no such user');
    END IF;
    IF u.deleted_at IS NOT NULL THEN
        RETURN rn_error(409, 'already_deleted', 'this user is deleted already',
                        jsonb_build_object('deleted_at', u.deleted_at));
    END IF;
    IF u.firebase_uid = p_admin_uid THEN
        RETURN rn_error(422, 'cannot_delete_self', 'an admin cannot delete their own account');
    END IF;
    PERFORM 1 FROM arcades
    WHERE id IN (SELECT arcade_id FROM reservations
                 WHERE (user_id = u.id OR player2_id = u.id)
                   AND status IN ('waiting', 'called', 'playing'))
    ORDER BY id
    FOR UPDATE;
    SELECT jsonb_agg(id ORDER BY id) INTO v_active FROM reservations
    WHERE (user_id = u.id OR player2_id = u.id) AND status IN ('called', 'playing');
    IF v_active IS NOT NULL THEN
        RETURN rn_error(409, 'has_active_reservations',
                        'this user is called or playing on a cabinet: try again after that game',
                        jsonb_build_object('reservation_ids', v_active));
    END IF;

    FOR r IN SELECT * FROM reservations
             WHERE (user_id = u.id OR player2_id = u.id) AND status = 'waiting'
             ORDER BY id LOOP
        v_answer := rn_cancel((SELECT firebase_uid FROM users WHERE id = r.user_id), r.id);
        IF (v_answer ->> 'status')::integer <> 200 THEN
            RAISE EXCEPTION 'cancelling reservation % of a deleted user: %', r.id,
                v_answer -> 'body';
        END IF;
        v_events := v_events || (v_answer -> 'events');
        v_arcades := v_arcades || jsonb_build_array(v_answer -> 'arcade');
        v_cancelled := v_cancelled || to_jsonb(r.id);
    END LOOP;
    UPDATE users SET deleted_at = now() WHERE id = u.id RETURNING * INTO u;
    RETURN rn_answer(200, jsonb_build_object('uid', u.firebase_uid, 'deleted_at', u.deleted_at,
                                             'cancelled_reservations', v_cancelled),
                     v_events)
        || jsonb_build_object(
               'arcades', v_arcades,
               'admin_event', jsonb_build_object('kind', 'user_deleted', 'uid', u.firebase_uid,
                                                 'by', p_admin_uid,
                                                 'cancelled_reservations', v_cancelled));
END
$$;

-- POST /admin/users/{uid}/restore: deleted_at cleared; the user, its
-- friendships and its balance are back as they were. 404 user_not_found,
-- 409 not_deleted. 200 {user}.
CREATE OR REPLACE FUNCTION rn_admin_user_restore(p_admin_uid text, p_target_uid text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    u users;
BEGIN
    SELECT * INTO u FROM users WHERE firebase_uid = p_target_uid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'user_not_found', 'no such user');
    END IF;
    IF u.deleted_at IS NULL THEN
        RETURN rn_error(409, 'not_deleted', 'this user is not deleted');
    END IF;
    UPDATE users SET deleted_at = NULL WHERE id = u.id RETURNING * INTO u;
    RETURN rn_answer(200, jsonb_build_object('user', rn_user_json(u)))
        || jsonb_build_object('admin_event', jsonb_build_object(
               'kind', 'user_restored', 'uid', u.firebase_uid, 'by', p_admin_uid));
END
$$;

-- GET /admin/users/deleted: deleted users, newest account first, paged by
-- user id. Items: rn_user_json + id + deleted_at.
CREATE OR REPLACE FUNCTION rn_admin_users_deleted(p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_answer(200, rn_page(
        (SELECT coalesce(jsonb_agg(rn_user_json(u) || jsonb_build_object(
                    'id', u.id, 'deleted_at', u.deleted_at) ORDER BY u.id DESC), '[]'::jsonb)
           FROM (SELECT * FROM users
                  WHERE deleted_at IS NOT NULL AND (p_cursor IS NULL OR id < p_cursor)
                  ORDER BY id DESC LIMIT p_limit + 1) u),
        p_limit))
$$;
