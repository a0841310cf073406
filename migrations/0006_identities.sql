-- Amplify identity ids (SPEC §13): the identity-pool id (`REGION:GUID`) that Cognito
-- Identity `GetId` gave a user-pool user (`subject`: the token's identity claim, `sub` by
-- default), so it is asked once per user and pool. The first id stored wins.
CREATE TABLE identities (
    pool_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (pool_id, subject)
);
