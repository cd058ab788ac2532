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
CREATE OR REPLACE FUNCTION rn_admin_promo_create(p_actor text, p_body jsonb)
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
    RETURN rn_with_audit(rn_answer(201, jsonb_build_object('promo_code', rn_promo_json(c))),
                         rn_audit_log(p_actor, 'promo_code.create', 'promo_code', c.id::text,
                                      NULL, rn_promo_json(c)));
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
    v_answer := rn_idem_check(v_admin, p_key, p_hash);
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
            v_answer := rn_with_audit(v_answer, rn_audit_log(
                p_admin_uid, 'tickets.adjust', 'user', p_target_uid,
                jsonb_build_object('balance', (v_post->>'balance')::integer - p_delta),
                jsonb_build_object('balance', v_post->'balance', 'delta', p_delta,
                                   'reason', btrim(p_reason), 'ledger_id', v_post->'ledger_id')));
        END IF;
    END IF;
    IF v_admin IS NULL THEN
        RETURN v_answer;
    END IF;
    RETURN rn_idem_store(v_admin, p_key, p_hash, v_answer);
END
$$;

CREATE OR REPLACE FUNCTION rn_game_json(g games)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', g.id, 'name', g.name, 'description', g.description,
        'min_players', g.min_players, 'max_players', g.max_players,
        'ticket_cost', g.ticket_cost, 'active', g.active,
        'max_duration_s', g.max_duration_s)
$$;

-- POST /admin/games {name, ticket_cost, description?, min_players?,
-- max_players?, active?}
CREATE OR REPLACE FUNCTION rn_admin_game_create(p_actor text, p_body jsonb)
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
    RETURN rn_with_audit(rn_answer(201, jsonb_build_object('game', rn_game_json(g))),
                         rn_audit_log(p_actor, 'game.create', 'game', g.id::text, NULL,
                                      rn_game_json(g)));
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
CREATE OR REPLACE FUNCTION rn_admin_arcade_create(p_actor text, p_id bigint, p_key_hash text,
                                                  p_body jsonb)
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
    RETURN rn_with_audit(
        rn_answer(201, jsonb_build_object('arcade', rn_arcade_json(a)))
            || jsonb_build_object('admin_event', jsonb_build_object('kind', 'arcade_created',
                                                                    'arcade_id', a.id)),
        rn_audit_log(p_actor, 'arcade.create', 'arcade', a.id::text, NULL, rn_arcade_json(a)));
END
$$;

-- POST /admin/arcades/{id}/rotate-key: the old key stops working at commit.
CREATE OR REPLACE FUNCTION rn_admin_arcade_rotate_key(p_actor text, p_id bigint, p_key_hash text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
BEGIN
    UPDATE arcades SET api_key_hash = p_key_hash WHERE id = p_id AND deleted_at IS NULL
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', 'no such arcade');
    END IF;
    -- the key's hash is no secret, but it is not worth keeping either
    RETURN rn_with_audit(
        rn_answer(200, jsonb_build_object('arcade', rn_arcade_json(a)))
            || jsonb_build_object('admin_event', jsonb_build_object('kind', 'arcade_key_rotated',
                                                                    'arcade_id', a.id)),
        rn_audit_log(p_actor, 'arcade.rotate_key', 'arcade', a.id::text, NULL,
                     jsonb_build_object('key_rotated_at', now())));
END
$$;

-- POST /admin/arcades/{id}/games {game_id, slot}
CREATE OR REPLACE FUNCTION rn_admin_arcade_add_game(p_actor text, p_arcade_id bigint,
                                                    p_game_id bigint, p_slot integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_constraint text;
BEGIN
    -- the arcade's lock first: the order of the queue and of the catalogue edits
    PERFORM 1 FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
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
    RETURN rn_with_audit(
        rn_catalogue_push(rn_answer(201, jsonb_build_object('arcade_id', p_arcade_id,
                                                            'game_id', p_game_id,
                                                            'slot', p_slot)),
                          ARRAY[p_arcade_id]),
        rn_audit_log(p_actor, 'slot.create', 'slot', p_arcade_id || '/' || p_slot, NULL,
                     jsonb_build_object('arcade_id', p_arcade_id, 'game_id', p_game_id,
                                        'slot', p_slot)));
END
$$;

-- DELETE /admin/users/{uid}: rn_user_delete (04_social.sql) in the admin's
-- name. 404 user_not_found, 409 already_deleted (a second DELETE; restore +
-- delete cancels a reservation that raced the first), 422
-- cannot_delete_self, 409 has_active_reservations.
CREATE OR REPLACE FUNCTION rn_admin_user_delete(p_admin_uid text, p_target_uid text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    u users;
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
    RETURN rn_user_delete(u, p_admin_uid,
                          'this user is called or playing on a cabinet: try again after that game');
END
$$;

-- POST /admin/users/{uid}/restore: deleted_at cleared; the user, its
-- friendships and its balance are back as they were. 404 user_not_found,
-- 409 not_deleted. 200 {user}.
CREATE OR REPLACE FUNCTION rn_admin_user_restore(p_admin_uid text, p_target_uid text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    u users;
    v_was timestamptz;
BEGIN
    SELECT * INTO u FROM users WHERE firebase_uid = p_target_uid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'user_not_found', 'no such user');
    END IF;
    IF u.deleted_at IS NULL THEN
        RETURN rn_error(409, 'not_deleted', 'this user is not deleted');
    END IF;
    v_was := u.deleted_at;
    UPDATE users SET deleted_at = NULL WHERE id = u.id RETURNING * INTO u;
    RETURN rn_with_audit(
        rn_answer(200, jsonb_build_object('user', rn_user_json(u)))
            || jsonb_build_object('admin_event', jsonb_build_object(
                   'kind', 'user_restored', 'uid', u.firebase_uid, 'by', p_admin_uid)),
        rn_audit_log(p_admin_uid, 'user.restore', 'user', u.firebase_uid,
                     jsonb_build_object('deleted_at', v_was), jsonb_build_object('deleted_at', NULL)));
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

-- ---------------------------------------------------------------------------
-- Catalogue edits and the cabinet's config (issue 10 items 3-4). Every edit
-- is one function: partial JSON (PATCH: only the fields given change; an
-- unknown field is 400 unknown_field, none at all 400 empty_patch), a soft
-- retire (DELETE: arcades get deleted_at, games, offers and promo codes
-- active = false), one audit row with the target before and after
-- (06_audit.sql), and, when cabinets or phones show what changed, a push
-- (rn_catalogue_push): each affected arcade's queue version is bumped, its
-- new snapshot returned in "arcades" and a cabinet_config event written for
-- its cabinet. Lock order: the arcades first, by id, then the edited row:
-- the queue's own order (a reservation locks its arcade, then its INSERT
-- key-shares the game row), so an edit and a reservation never deadlock.

-- The config a cabinet runs with (GET /arcades/{id}/config, the
-- cabinet_config push): its games by slot, its limits, its maintenance
-- state (the cabinet's own or an operator's switch, with the operator's
-- message), its opening hours (as the public arcade shows them), the
-- server's time. NULL for an unknown arcade; "retired": true for a retired
-- one.
CREATE OR REPLACE FUNCTION rn_cabinet_config(p_arcade_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    a arcades;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object(
        'arcade_id', a.id, 'name', a.name, 'location', a.location, 'status', a.status,
        'retired', a.deleted_at IS NOT NULL, 'v', (SELECT q.version FROM arcade_queue q WHERE q.arcade_id = a.id),
        'maintenance', jsonb_build_object(
            'active', a.status = 'maintenance' OR a.maintenance,
            'message', a.maintenance_message),
        'opening_hours', rn_public_arcade_json(a) -> 'opening_hours',
        'games', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'slot', ag.slot, 'game_id', g.id, 'name', g.name,
                             'ticket_cost', g.ticket_cost, 'min_players', g.min_players,
                             'max_players', g.max_players, 'max_duration_s', g.max_duration_s,
                             'active', g.active) ORDER BY ag.slot), '[]'::jsonb)
                  FROM arcade_games ag JOIN games g ON g.id = ag.game_id
                  WHERE ag.arcade_id = a.id),
        'limits', jsonb_build_object('unlock_max_failures', 5, 'unlock_window_s', 300,
                                     'unlock_lock_s', 60, 'max_players', 2),
        'server_time_ms', rn_ms(clock_timestamp()));
END
$$;

-- Pushes a catalogue change to the given arcades (live ones; any order,
-- duplicates ignored): each is locked, its queue version bumped, a
-- cabinet_config event written for its cabinet; the answer gets the events
-- and, in "arcades", each new public snapshot.
CREATE OR REPLACE FUNCTION rn_catalogue_push(p_answer jsonb, p_arcade_ids bigint[])
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    v_events jsonb := coalesce(p_answer -> 'events', '[]'::jsonb);
    v_arcades jsonb := coalesce(p_answer -> 'arcades', '[]'::jsonb);
BEGIN
    FOR a IN SELECT * FROM arcades
             WHERE id = ANY (p_arcade_ids) AND deleted_at IS NULL
             ORDER BY id FOR UPDATE LOOP
        PERFORM rn_queue_bump(a.id);
        v_events := v_events || jsonb_build_array(
                        rn_cabinet_event(a.id, 'cabinet_config', rn_cabinet_config(a.id)));
        v_arcades := v_arcades || jsonb_build_array(rn_queue_snapshot(a.id));
    END LOOP;
    RETURN p_answer || jsonb_build_object('events', v_events, 'arcades', v_arcades);
END
$$;

-- A PATCH body's shape: NULL when fine, else the 400 answer.
CREATE OR REPLACE FUNCTION rn_patch_check(p_body jsonb, p_allowed text[])
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(p_body) IS DISTINCT FROM 'object' THEN
            rn_error(400, 'bad_request', 'expected a JSON object')
        WHEN p_body = '{}'::jsonb THEN
            rn_error(400, 'empty_patch', 'nothing to change: give at least one field',
                     jsonb_build_object('fields', to_jsonb(p_allowed)))
        WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(p_body) k WHERE k <> ALL (p_allowed)) THEN
            rn_error(400, 'unknown_field',
                     format('unknown field(s): %s', (SELECT string_agg(k, ', ' ORDER BY k)
                                                     FROM jsonb_object_keys(p_body) k
                                                     WHERE k <> ALL (p_allowed))),
                     jsonb_build_object('fields', to_jsonb(p_allowed)))
    END
$$;

-- PATCH /admin/arcades/{id} {name?, location?}. 404 arcade_not_found (also
-- retired), 422 invalid_name / invalid_location. 200 {arcade}.
CREATE OR REPLACE FUNCTION rn_admin_arcade_update(p_actor text, p_id bigint, p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    v_before jsonb;
    v_name text;
    v_location text;
BEGIN
    IF rn_patch_check(p_body, ARRAY['name', 'location']) IS NOT NULL THEN
        RETURN rn_patch_check(p_body, ARRAY['name', 'location']);
    END IF;
    BEGIN
        v_name := btrim(rn_body_field(p_body, 'name', 'string'));
        v_location := btrim(rn_body_field(p_body, 'location', 'string'));
    EXCEPTION WHEN invalid_parameter_value THEN
        RETURN rn_error(400, 'bad_request', SQLERRM);
    END;
    SELECT * INTO a FROM arcades WHERE id = p_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', 'no such arcade');
    END IF;
    IF p_body ? 'name' AND char_length(coalesce(v_name, '')) NOT BETWEEN 1 AND 100 THEN
        RETURN rn_error(422, 'invalid_name', 'name: 1 to 100 characters');
    END IF;
    IF char_length(coalesce(v_location, '')) > 200 THEN
        RETURN rn_error(422, 'invalid_location', 'location: at most 200 characters');
    END IF;
    v_before := rn_arcade_json(a);
    UPDATE arcades
       SET name = CASE WHEN p_body ? 'name' THEN v_name ELSE name END,
           location = CASE WHEN p_body ? 'location' THEN coalesce(v_location, '')
                           ELSE location END
     WHERE id = a.id
    RETURNING * INTO a;
    RETURN rn_with_audit(
        rn_catalogue_push(rn_answer(200, jsonb_build_object('arcade', rn_arcade_json(a))),
                          ARRAY[a.id]),
        rn_audit_log(p_actor, 'arcade.update', 'arcade', a.id::text, v_before,
                     rn_arcade_json(a)));
END
$$;

-- DELETE /admin/arcades/{id}: retired (deleted_at): gone from the catalogue,
-- its key refused, its cabinet's sockets closed by the hub (4001, as after a
-- key rotation: no event is left for a cabinet that will never ack it). Only with an empty queue: 409
-- arcade_has_reservations {reservation_ids} while any is waiting, called or
-- playing (cancel or void them first). 404 arcade_not_found. 200 {arcade}.
CREATE OR REPLACE FUNCTION rn_admin_arcade_retire(p_actor text, p_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    v_before jsonb;
    v_live jsonb;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', 'no such arcade');
    END IF;
    SELECT jsonb_agg(id ORDER BY id) INTO v_live FROM reservations
    WHERE arcade_id = a.id AND status IN ('waiting', 'called', 'playing');
    IF v_live IS NOT NULL THEN
        RETURN rn_error(409, 'arcade_has_reservations',
                        'reservations are live on this arcade: cancel or void them first',
                        jsonb_build_object('reservation_ids', v_live));
    END IF;
    v_before := rn_arcade_json(a) || jsonb_build_object('deleted_at', NULL);
    UPDATE arcades SET deleted_at = now(), status = 'offline' WHERE id = a.id
    RETURNING * INTO a;
    PERFORM rn_queue_bump(a.id);
    RETURN rn_with_audit(
        rn_answer(200, jsonb_build_object('arcade', rn_arcade_json(a)
                                                    || jsonb_build_object('deleted_at', a.deleted_at)))
            || jsonb_build_object('admin_event', jsonb_build_object('kind', 'arcade_retired',
                                                                    'arcade_id', a.id,
                                                                    'by', p_actor)),
        rn_audit_log(p_actor, 'arcade.retire', 'arcade', a.id::text, v_before,
                     rn_arcade_json(a) || jsonb_build_object('deleted_at', a.deleted_at)));
END
$$;

-- Locks the live arcades that have the game, by id (before the game row).
CREATE OR REPLACE FUNCTION rn_lock_game_arcades(p_game_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM arcades
    WHERE id IN (SELECT arcade_id FROM arcade_games WHERE game_id = p_game_id)
      AND deleted_at IS NULL
    ORDER BY id
    FOR UPDATE;
END
$$;

-- A game changed (edited or retired) by p_actor: its answer {game}, the
-- catalogue push to every arcade that has it (rn_catalogue_push), and the
-- audit row p_action with the game before (p_before) and after.
CREATE OR REPLACE FUNCTION rn_game_changed(p_actor text, p_action text, g games, p_before jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN rn_with_audit(
        rn_catalogue_push(rn_answer(200, jsonb_build_object('game', rn_game_json(g))),
                          coalesce((SELECT array_agg(arcade_id) FROM arcade_games
                                     WHERE game_id = g.id), '{}')),
        rn_audit_log(p_actor, p_action, 'game', g.id::text, p_before, rn_game_json(g)));
END
$$;

-- PATCH /admin/games/{id} {name?, description?, ticket_cost?, min_players?,
-- max_players?, max_duration_s? (null: the hub's default), active?}. A
-- reservation keeps the cost it was booked at. 404 game_not_found, 409
-- game_name_taken, 422 invalid_name / invalid_ticket_cost / invalid_players /
-- invalid_max_duration. 200 {game}; every arcade with the game is pushed.
CREATE OR REPLACE FUNCTION rn_admin_game_update(p_actor text, p_id bigint, p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    g games;
    v_before jsonb;
    v_name text;
    v_description text;
    v_cost integer;
    v_min integer;
    v_max integer;
    v_duration integer;
    v_active boolean;
BEGIN
    IF rn_patch_check(p_body, ARRAY['name', 'description', 'ticket_cost', 'min_players',
                                    'max_players', 'max_duration_s', 'active']) IS NOT NULL THEN
        RETURN rn_patch_check(p_body, ARRAY['name', 'description', 'ticket_cost', 'min_players',
                                            'max_players', 'max_duration_s', 'active']);
    END IF;
    PERFORM rn_lock_game_arcades(p_id);
    SELECT * INTO g FROM games WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'game_not_found', 'no such game');
    END IF;
    BEGIN
        v_name := CASE WHEN p_body ? 'name' THEN btrim(rn_body_field(p_body, 'name', 'string'))
                       ELSE g.name END;
        v_description := CASE WHEN p_body ? 'description'
                              THEN coalesce(rn_body_field(p_body, 'description', 'string'), '')
                              ELSE g.description END;
        v_cost := CASE WHEN p_body ? 'ticket_cost'
                       THEN rn_body_field(p_body, 'ticket_cost', 'number')::integer
                       ELSE g.ticket_cost END;
        v_min := CASE WHEN p_body ? 'min_players'
                      THEN rn_body_field(p_body, 'min_players', 'number')::integer
                      ELSE g.min_players END;
        v_max := CASE WHEN p_body ? 'max_players'
                      THEN rn_body_field(p_body, 'max_players', 'number')::integer
                      ELSE g.max_players END;
        v_duration := CASE WHEN p_body ? 'max_duration_s'
                           THEN rn_body_field(p_body, 'max_duration_s', 'number')::integer
                           ELSE g.max_duration_s END;
        v_active := CASE WHEN p_body ? 'active'
                         THEN rn_body_field(p_body, 'active', 'boolean')::boolean
                         ELSE g.active END;
    EXCEPTION WHEN invalid_parameter_value OR invalid_text_representation
                   OR numeric_value_out_of_range THEN
        RETURN rn_error(400, 'bad_request', SQLERRM);
    END;
    IF char_length(coalesce(v_name, '')) NOT BETWEEN 1 AND 100 THEN
        RETURN rn_error(422, 'invalid_name', 'name: 1 to 100 characters');
    END IF;
    IF char_length(v_description) > 2000 THEN
        RETURN rn_error(422, 'invalid_description', 'description: at most 2000 characters');
    END IF;
    IF v_cost IS NULL OR v_cost NOT BETWEEN 1 AND 1000 THEN
        RETURN rn_error(422, 'invalid_ticket_cost', 'ticket_cost: 1 to 1000');
    END IF;
    IF v_min IS NULL OR v_max IS NULL OR v_min NOT BETWEEN 1 AND 2 OR v_max NOT BETWEEN 1 AND 2
       OR v_min > v_max THEN
        RETURN rn_error(422, 'invalid_players', 'players: 1 <= min_players <= max_players <= 2');
    END IF;
    IF v_duration IS NOT NULL AND v_duration NOT BETWEEN 10 AND 86400 THEN
        RETURN rn_error(422, 'invalid_max_duration',
                        'max_duration_s: 10 to 86400 seconds, or null for the default');
    END IF;
    IF v_active IS NULL THEN
        RETURN rn_error(422, 'invalid_active', 'active: true or false');
    END IF;
    IF v_name <> g.name AND EXISTS (SELECT 1 FROM games WHERE name = v_name AND id <> g.id) THEN
        RETURN rn_error(409, 'game_name_taken', 'a game with this name exists');
    END IF;
    v_before := rn_game_json(g);
    BEGIN
        UPDATE games
           SET name = v_name, description = v_description, ticket_cost = v_cost,
               min_players = v_min, max_players = v_max, max_duration_s = v_duration,
               active = v_active
         WHERE id = g.id
        RETURNING * INTO g;
    EXCEPTION WHEN unique_violation THEN -- renamed at the same time as another game
        RETURN rn_error(409, 'game_name_taken', 'a game with this name exists');
    END;
    RETURN rn_game_changed(p_actor, 'game.update', g, v_before);
END
$$;

-- DELETE /admin/games/{id}: retired (active = false): no new reservation,
-- gone from the catalogue and the phones' arcade views; reservations already
-- made are played. Again on a retired game: 200, nothing written.
-- 404 game_not_found. 200 {game}.
CREATE OR REPLACE FUNCTION rn_admin_game_retire(p_actor text, p_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    g games;
    v_before jsonb;
BEGIN
    PERFORM rn_lock_game_arcades(p_id);
    SELECT * INTO g FROM games WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'game_not_found', 'no such game');
    END IF;
    IF NOT g.active THEN
        RETURN rn_answer(200, jsonb_build_object('game', rn_game_json(g)));
    END IF;
    v_before := rn_game_json(g);
    UPDATE games SET active = false WHERE id = g.id RETURNING * INTO g;
    RETURN rn_game_changed(p_actor, 'game.retire', g, v_before);
END
$$;

-- The live reservations of a game at an arcade, as an array of ids (NULL: none).
CREATE OR REPLACE FUNCTION rn_slot_live(p_arcade_id bigint, p_game_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_agg(id ORDER BY id) FROM reservations
    WHERE arcade_id = p_arcade_id AND game_id = p_game_id
      AND status IN ('waiting', 'called', 'playing')
$$;

-- PATCH /admin/arcades/{id}/games/{slot} {game_id}: another game in the
-- slot. DELETE: the slot emptied. Either only while no reservation of the
-- slot's game is live there: 409 slot_in_use {reservation_ids}. 404
-- arcade_not_found / slot_not_found / game_not_found, 409
-- game_already_on_arcade. 200 {arcade_id, slot, game_id} (null once deleted).
CREATE OR REPLACE FUNCTION rn_admin_slot_set(p_actor text, p_arcade_id bigint, p_slot integer,
                                             p_game_id bigint, p_delete boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    ag arcade_games;
    v_live jsonb;
    v_after jsonb;
BEGIN
    PERFORM 1 FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', 'no such arcade');
    END IF;
    SELECT * INTO ag FROM arcade_games WHERE arcade_id = p_arcade_id AND slot = p_slot FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'slot_not_found', 'no game in this slot of the arcade');
    END IF;
    IF NOT p_delete AND ag.game_id = p_game_id THEN
        RETURN rn_answer(200, jsonb_build_object('arcade_id', p_arcade_id, 'slot', p_slot,
                                                 'game_id', p_game_id));
    END IF;
    IF NOT p_delete AND NOT EXISTS (SELECT 1 FROM games WHERE id = p_game_id) THEN
        RETURN rn_error(404, 'game_not_found', 'no such game');
    END IF;
    IF NOT p_delete AND EXISTS (SELECT 1 FROM arcade_games
                                WHERE arcade_id = p_arcade_id AND game_id = p_game_id) THEN
        RETURN rn_error(409, 'game_already_on_arcade', 'this game is already on this arcade');
    END IF;
    v_live := rn_slot_live(p_arcade_id, ag.game_id);
    IF v_live IS NOT NULL THEN
        RETURN rn_error(409, 'slot_in_use',
                        'reservations of this slot''s game are live: wait, cancel or void them',
                        jsonb_build_object('reservation_ids', v_live));
    END IF;
    IF p_delete THEN
        DELETE FROM arcade_games WHERE arcade_id = p_arcade_id AND slot = p_slot;
        v_after := NULL;
    ELSE
        UPDATE arcade_games SET game_id = p_game_id
         WHERE arcade_id = p_arcade_id AND slot = p_slot;
        v_after := jsonb_build_object('arcade_id', p_arcade_id, 'slot', p_slot,
                                      'game_id', p_game_id);
    END IF;
    RETURN rn_with_audit(
        rn_catalogue_push(rn_answer(200, jsonb_build_object(
                              'arcade_id', p_arcade_id, 'slot', p_slot,
                              'game_id', CASE WHEN p_delete THEN NULL ELSE p_game_id END)),
                          ARRAY[p_arcade_id]),
        rn_audit_log(p_actor, CASE WHEN p_delete THEN 'slot.delete' ELSE 'slot.update' END,
                     'slot', p_arcade_id || '/' || p_slot,
                     jsonb_build_object('arcade_id', p_arcade_id, 'slot', p_slot,
                                        'game_id', ag.game_id),
                     v_after));
END
$$;

CREATE OR REPLACE FUNCTION rn_offer_json(o ticket_offers)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', o.id, 'name', o.name, 'tickets', o.tickets,
                              'price_cents', o.price_cents, 'currency', o.currency,
                              'active', o.active, 'created_at', o.created_at)
$$;

-- POST /admin/offers {name, tickets, price_cents, currency?, active?} (p_id
-- NULL) and PATCH /admin/offers/{id} with any of them: one validation. A
-- purchase keeps the terms it was made with. 404 offer_not_found, 422
-- invalid_name / invalid_tickets / invalid_price / invalid_currency. 201 or
-- 200 {offer}.
CREATE OR REPLACE FUNCTION rn_admin_offer_save(p_actor text, p_id bigint, p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    o ticket_offers;
    v_currency text;
    v_before jsonb;
    v_fields text[] := ARRAY['name', 'tickets', 'price_cents', 'currency', 'active'];
BEGIN
    IF p_id IS NOT NULL AND rn_patch_check(p_body, v_fields) IS NOT NULL THEN
        RETURN rn_patch_check(p_body, v_fields);
    END IF;
    IF p_id IS NOT NULL THEN
        SELECT * INTO o FROM ticket_offers WHERE id = p_id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN rn_error(404, 'offer_not_found', 'no such offer');
        END IF;
        v_before := rn_offer_json(o);
    ELSE
        o.currency := 'EUR';
        o.active := true;
    END IF;
    BEGIN
        IF p_id IS NULL OR p_body ? 'name' THEN
            o.name := btrim(rn_body_field(p_body, 'name', 'string'));
        END IF;
        IF p_id IS NULL OR p_body ? 'tickets' THEN
            o.tickets := rn_body_field(p_body, 'tickets', 'number')::integer;
        END IF;
        IF p_id IS NULL OR p_body ? 'price_cents' THEN
            o.price_cents := rn_body_field(p_body, 'price_cents', 'number')::integer;
        END IF;
        v_currency := CASE WHEN p_body ? 'currency'
                           THEN upper(rn_body_field(p_body, 'currency', 'string'))
                           ELSE o.currency END;
        IF p_body ? 'active' THEN
            o.active := rn_body_field(p_body, 'active', 'boolean')::boolean;
        END IF;
    EXCEPTION WHEN invalid_parameter_value OR invalid_text_representation
                   OR numeric_value_out_of_range OR string_data_right_truncation THEN
        RETURN rn_error(400, 'bad_request', SQLERRM);
    END;
    IF char_length(coalesce(o.name, '')) NOT BETWEEN 1 AND 100 THEN
        RETURN rn_error(422, 'invalid_name', 'name: 1 to 100 characters');
    END IF;
    IF o.tickets IS NULL OR o.tickets NOT BETWEEN 1 AND 100000 THEN
        RETURN rn_error(422, 'invalid_tickets', 'tickets: 1 to 100000');
    END IF;
    IF o.price_cents IS NULL OR o.price_cents NOT BETWEEN 0 AND 10000000 THEN
        RETURN rn_error(422, 'invalid_price', 'price_cents: 0 to 10000000');
    END IF;
    IF v_currency IS NULL OR v_currency !~ '^[A-Z]{3}$' THEN
        RETURN rn_error(422, 'invalid_currency', 'currency: three letters (ISO 4217)');
    END IF;
    o.currency := v_currency;
    IF o.active IS NULL THEN
        RETURN rn_error(422, 'invalid_active', 'active: true or false');
    END IF;
    IF p_id IS NULL THEN
        INSERT INTO ticket_offers (name, tickets, price_cents, currency, active)
        VALUES (o.name, o.tickets, o.price_cents, o.currency, o.active)
        RETURNING * INTO o;
    ELSE
        UPDATE ticket_offers
           SET name = o.name, tickets = o.tickets, price_cents = o.price_cents,
               currency = o.currency, active = o.active
         WHERE id = p_id
        RETURNING * INTO o;
    END IF;
    RETURN rn_with_audit(
        rn_answer(CASE WHEN p_id IS NULL THEN 201 ELSE 200 END,
                  jsonb_build_object('offer', rn_offer_json(o))),
        rn_audit_log(p_actor, CASE WHEN p_id IS NULL THEN 'offer.create'
                                   WHEN p_body = '{"active": false}'::jsonb THEN 'offer.deactivate'
                                   ELSE 'offer.update' END,
                     'offer', o.id::text, v_before, rn_offer_json(o)));
END
$$;

-- GET /admin/offers: every offer, active or not, newest first.
CREATE OR REPLACE FUNCTION rn_admin_offer_list(p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_answer(200, rn_page(
        (SELECT coalesce(jsonb_agg(rn_offer_json(o) ORDER BY o.id DESC), '[]'::jsonb)
           FROM (SELECT * FROM ticket_offers
                  WHERE p_cursor IS NULL OR id < p_cursor
                  ORDER BY id DESC LIMIT p_limit + 1) o),
        p_limit))
$$;

-- PATCH /admin/promo-codes/{id} {tickets?, max_uses? (null: unlimited),
-- valid_from?, valid_until? (null: no end), active?}. The code itself and
-- its uses stay. 404 promo_code_not_found, 422 invalid_tickets /
-- invalid_max_uses (below the uses so far) / invalid_window. 200 {promo_code}.
CREATE OR REPLACE FUNCTION rn_admin_promo_update(p_actor text, p_id bigint, p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c promo_codes;
    v_before jsonb;
    v_fields text[] := ARRAY['tickets', 'max_uses', 'valid_from', 'valid_until', 'active'];
BEGIN
    IF rn_patch_check(p_body, v_fields) IS NOT NULL THEN
        RETURN rn_patch_check(p_body, v_fields);
    END IF;
    SELECT * INTO c FROM promo_codes WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'promo_code_not_found', 'no such promo code');
    END IF;
    v_before := rn_promo_json(c);
    BEGIN
        IF p_body ? 'tickets' THEN
            c.tickets := rn_body_field(p_body, 'tickets', 'number')::integer;
        END IF;
        IF p_body ? 'max_uses' THEN
            c.max_uses := rn_body_field(p_body, 'max_uses', 'number')::integer;
        END IF;
        IF p_body ? 'valid_from' THEN
            c.valid_from := coalesce(rn_body_field(p_body, 'valid_from', 'string')::timestamptz,
                                     now());
        END IF;
        IF p_body ? 'valid_until' THEN
            c.valid_until := rn_body_field(p_body, 'valid_until', 'string')::timestamptz;
        END IF;
        IF p_body ? 'active' THEN
            c.active := rn_body_field(p_body, 'active', 'boolean')::boolean;
        END IF;
    EXCEPTION WHEN invalid_parameter_value OR invalid_text_representation
                   OR invalid_datetime_format OR datetime_field_overflow
                   OR numeric_value_out_of_range THEN
        RETURN rn_error(400, 'bad_request', SQLERRM);
    END;
    IF c.tickets IS NULL OR c.tickets NOT BETWEEN 1 AND 100000 THEN
        RETURN rn_error(422, 'invalid_tickets', 'tickets: 1 to 100000');
    END IF;
    IF c.max_uses IS NOT NULL AND (c.max_uses < 1 OR c.max_uses < c.uses) THEN
        RETURN rn_error(422, 'invalid_max_uses',
                        'max_uses: at least 1 and at least the uses so far (null: unlimited)',
                        jsonb_build_object('uses', c.uses));
    END IF;
    IF c.valid_until IS NOT NULL AND c.valid_until <= c.valid_from THEN
        RETURN rn_error(422, 'invalid_window', 'valid_until must be after valid_from');
    END IF;
    IF c.active IS NULL THEN
        RETURN rn_error(422, 'invalid_active', 'active: true or false');
    END IF;
    UPDATE promo_codes
       SET tickets = c.tickets, max_uses = c.max_uses, valid_from = c.valid_from,
           valid_until = c.valid_until, active = c.active
     WHERE id = c.id
    RETURNING * INTO c;
    RETURN rn_with_audit(
        rn_answer(200, jsonb_build_object('promo_code', rn_promo_json(c))),
        rn_audit_log(p_actor, CASE WHEN p_body = '{"active": false}'::jsonb
                                   THEN 'promo_code.deactivate' ELSE 'promo_code.update' END,
                     'promo_code', c.id::text, v_before, rn_promo_json(c)));
END
$$;

-- A cabinet's config as a cabinet_config event for its cabinet (sent when
-- it connects: the hub publishes it like any event). 404 for an unknown or
-- retired arcade.
CREATE OR REPLACE FUNCTION rn_cabinet_config_push(p_arcade_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL) THEN
        RETURN rn_error(404, 'arcade_not_found', 'no such arcade');
    END IF;
    RETURN rn_answer(200, '{}'::jsonb, jsonb_build_array(
        rn_cabinet_event(p_arcade_id, 'cabinet_config', rn_cabinet_config(p_arcade_id))));
END
$$;
