-- Failed console sign-ins are counted per email and per client address: the key becomes a
-- subject, `email:<address>` or `address:<ip>`.
ALTER TABLE console_sign_in_failures RENAME COLUMN email TO subject;
UPDATE console_sign_in_failures SET subject = 'email:' || subject;
