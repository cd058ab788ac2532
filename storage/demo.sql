-- Demo data for a fresh Retronova database, applied after the migrations:
--
--   psql -v ON_ERROR_STOP=1 -f storage/demo.sql "$DATABASE_URL"
--
-- Idempotent: a second run changes nothing (no row, no sequence). Rows with a
-- serial id are inserted only WHERE NOT EXISTS, so that a skipped row does not
-- burn a sequence value; rows with a fixed id use ON CONFLICT DO NOTHING.
-- Tickets are granted through the ledger, so tickets_balance = sum(ledger.delta)
-- holds for every user.
BEGIN;

-- Users: alice and bob (players, friends), admin.
INSERT INTO users (firebase_uid, pseudo, first_name, last_name, role)
SELECT v.uid, v.pseudo, v.first_name, v.last_name, v.role
FROM (VALUES ('demo-alice', 'alice', 'Alice', 'Martin', 'player'),
             ('demo-bob', 'bob', 'Bob', 'Durand', 'player'),
             ('demo-admin', 'admin', 'Ada', 'Admin', 'admin'))
     AS v (uid, pseudo, first_name, last_name, role)
WHERE NOT EXISTS (SELECT 1 FROM users u
                  WHERE u.firebase_uid = v.uid OR lower(u.pseudo) = lower(v.pseudo));

INSERT INTO friendships (requester_id, addressee_id, status)
SELECT a.id, b.id, 'accepted'
FROM users a, users b
WHERE a.firebase_uid = 'demo-alice' AND b.firebase_uid = 'demo-bob'
  AND NOT EXISTS (SELECT 1 FROM friendships f
                  WHERE least(f.requester_id, f.addressee_id) = least(a.id, b.id)
                    AND greatest(f.requester_id, f.addressee_id) = greatest(a.id, b.id));

-- Catalogue: fixed ids, so that demos and tests can name them.
INSERT INTO games (id, name, description, min_players, max_players, ticket_cost) VALUES
    (1, 'Street Brawler', 'Two fighters, one cabinet, best of three rounds.', 2, 2, 2),
    (2, 'Galaxy Raiders', 'Shoot the invading fleet alone or with a friend.', 1, 2, 1),
    (3, 'Neon Racer', 'Beat the clock on a synthwave highway.', 1, 1, 1),
    (4, 'Pixel Puzzle', 'Clear falling blocks before they reach the top.', 1, 1, 1)
ON CONFLICT DO NOTHING;

INSERT INTO arcades (id, name, location, status) VALUES
    (1, 'Retronova Paris Bastille', '12 rue de la Roquette, 75011 Paris', 'offline'),
    (2, 'Retronova Lyon Part-Dieu', 'Centre commercial Part-Dieu, 69003 Lyon', 'offline'),
    (3, 'Retronova Bordeaux Quai', 'Quai des Chartrons, 33000 Bordeaux', 'offline')
ON CONFLICT DO NOTHING;

-- Every game is playable somewhere.
INSERT INTO arcade_games (arcade_id, slot, game_id) VALUES
    (1, 1, 1), (1, 2, 2), (1, 3, 3), (1, 4, 4),
    (2, 1, 2), (2, 2, 3),
    (3, 1, 1), (3, 2, 4)
ON CONFLICT DO NOTHING;

INSERT INTO ticket_offers (id, name, tickets, price_cents, currency) VALUES
    (1, '10 tickets', 10, 500, 'EUR'),
    (2, '25 tickets', 25, 1000, 'EUR'),
    (3, '60 tickets', 60, 2000, 'EUR')
ON CONFLICT DO NOTHING;

INSERT INTO promo_codes (code, tickets, max_uses, valid_from, valid_until)
SELECT 'WELCOME10', 10, 1000, now(), now() + interval '1 year'
WHERE NOT EXISTS (SELECT 1 FROM promo_codes WHERE code = 'WELCOME10');

-- 20 starting tickets for alice and bob, once: the balance and its ledger row
-- move together.
WITH granted AS (
    UPDATE users u
    SET tickets_balance = u.tickets_balance + 20
    WHERE u.firebase_uid IN ('demo-alice', 'demo-bob')
      AND NOT EXISTS (SELECT 1 FROM ledger l
                      WHERE l.user_id = u.id AND l.kind = 'adjustment'
                        AND l.reason = 'demo grant')
    RETURNING u.id, u.tickets_balance
)
INSERT INTO ledger (user_id, delta, balance_after, kind, reason)
SELECT id, 20, tickets_balance, 'adjustment', 'demo grant'
FROM granted
ORDER BY id;

-- After explicit ids, move the sequences past them (never backwards).
SELECT setval(pg_get_serial_sequence('games', 'id'),
              greatest((SELECT max(id) FROM games), (SELECT last_value FROM games_id_seq)));
SELECT setval(pg_get_serial_sequence('arcades', 'id'),
              greatest((SELECT max(id) FROM arcades), (SELECT last_value FROM arcades_id_seq)));
SELECT setval(pg_get_serial_sequence('ticket_offers', 'id'),
              greatest((SELECT max(id) FROM ticket_offers),
                       (SELECT last_value FROM ticket_offers_id_seq)));

COMMIT;
