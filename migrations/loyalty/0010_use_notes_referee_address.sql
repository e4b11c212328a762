-- loyalty_use takes where the referee used the code (a keyed hash of the address) and writes
-- it with the referral, in the one statement of a use; it was an UPDATE of its own after every
-- use, referral or not. The new signature is its file in loyalty_service/store/sql/.
DROP FUNCTION IF EXISTS loyalty_use(text, text, uuid, text, uuid, timestamptz);
