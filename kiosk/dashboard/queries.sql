-- Dashboard sessions (kiosk/dashboard/session.py): the cookie carries a session id, this table its hash.

-- name: insert_session
-- A new sign-in
INSERT INTO dashboard_sessions (id_hash, actor, token_fingerprint, expires_at, remote_addr)
VALUES (%(id_hash)s, %(actor)s, %(fingerprint)s, to_timestamp(%(expires)s), %(remote_addr)s);

-- name: find_session
-- The session of a cookie: one primary-key lookup, only while unexpired and made with this admin token
SELECT actor, extract(epoch FROM expires_at)::bigint AS expires
FROM dashboard_sessions
WHERE id_hash = %(id_hash)s AND token_fingerprint = %(fingerprint)s AND expires_at > now();

-- name: delete_session
-- Sign-out: this session ends
DELETE FROM dashboard_sessions WHERE id_hash = %(id_hash)s;

-- name: delete_all_sessions
-- Sign out everywhere: every session ends
DELETE FROM dashboard_sessions;

-- name: delete_dead_sessions
-- Expired sessions, and sessions made with another admin token (it changed): they can never match
DELETE FROM dashboard_sessions WHERE expires_at <= now() OR token_fingerprint <> %(fingerprint)s;
