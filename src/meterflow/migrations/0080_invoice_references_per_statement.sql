-- The references of invoices and fees, checked once per statement instead of once per row.
--
-- The invoicer writes a round of invoices with their fees in one statement. As foreign
-- keys, each invoice's organization, customer and subscription and each fee's invoice and
-- add-on were checked one row at a time (a lookup and a row lock each: seven per invoice
-- of three fees). Measured on the invoicer's write of 1,000 invoices, the foreign keys
-- were a quarter of its Postgres CPU; these checks, one anti-join per statement over the
-- rows it inserted (transition tables), keep about two thirds of that saving.
--
-- What the foreign keys' row locks guarded against, a referenced row deleted by another
-- transaction between the check and the commit, is kept from the other side: meterflow
-- never deletes these rows, and a DELETE of one (by hand) takes a SHARE lock on invoices
-- or fees first, so it waits for every transaction writing them, then refuses (customers,
-- subscriptions, add-ons still referenced) or cascades (an organization's invoices, an
-- invoice's fees) as the foreign keys did.

ALTER TABLE invoices
    DROP CONSTRAINT invoices_organization_id_fkey,
    DROP CONSTRAINT invoices_customer_id_fkey,
    DROP CONSTRAINT invoices_subscription_id_fkey;
ALTER TABLE fees
    DROP CONSTRAINT fees_invoice_id_fkey,
    DROP CONSTRAINT fees_add_on_id_fkey;

CREATE FUNCTION invoices_references_exist() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    missing text;
BEGIN
    SELECT format('invoice %s names organization %s, customer %s and subscription %s: '
                  'one of them does not exist', n.id, n.organization_id, n.customer_id,
                  n.subscription_id)
    INTO missing
    FROM inserted n
    WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = n.organization_id)
       OR NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = n.customer_id)
       OR (n.subscription_id IS NOT NULL  -- a one-off invoice has none
           AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = n.subscription_id))
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE foreign_key_violation USING MESSAGE = missing, TABLE = 'invoices';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER invoices_references AFTER INSERT ON invoices
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION invoices_references_exist();

CREATE FUNCTION fees_references_exist() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    missing text;
BEGIN
    SELECT format('fee %s names invoice %s and add-on %s: one of them does not exist',
                  n.id, n.invoice_id, n.add_on_id)
    INTO missing
    FROM inserted n
    WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.id = n.invoice_id)
       OR (n.add_on_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM add_ons a WHERE a.id = n.add_on_id))
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE foreign_key_violation USING MESSAGE = missing, TABLE = 'fees';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER fees_references AFTER INSERT ON fees
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION fees_references_exist();

-- An UPDATE that sets a reference (a one-off invoice's fee gets its add-on so) is checked
-- row by row: only an UPDATE that names a reference column fires these, and none of the
-- invoicer's does.
CREATE FUNCTION changed_references_exist() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_TABLE_NAME = 'fees' THEN
        IF NOT EXISTS (SELECT 1 FROM invoices i WHERE i.id = NEW.invoice_id)
           OR (NEW.add_on_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM add_ons a WHERE a.id = NEW.add_on_id)) THEN
            RAISE foreign_key_violation
                USING MESSAGE = format('fee %s names invoice %s and add-on %s: one of them '
                                       'does not exist', NEW.id, NEW.invoice_id, NEW.add_on_id),
                      TABLE = 'fees';
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = NEW.organization_id)
       OR NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = NEW.customer_id)
       OR (NEW.subscription_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = NEW.subscription_id)) THEN
        RAISE foreign_key_violation
            USING MESSAGE = format('invoice %s names organization %s, customer %s and '
                                   'subscription %s: one of them does not exist', NEW.id,
                                   NEW.organization_id, NEW.customer_id, NEW.subscription_id),
                  TABLE = 'invoices';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER invoices_references_changed BEFORE UPDATE OF organization_id, customer_id,
    subscription_id ON invoices FOR EACH ROW
    WHEN (OLD.organization_id IS DISTINCT FROM NEW.organization_id
          OR OLD.customer_id IS DISTINCT FROM NEW.customer_id
          OR OLD.subscription_id IS DISTINCT FROM NEW.subscription_id)
    EXECUTE FUNCTION changed_references_exist();
CREATE TRIGGER fees_references_changed BEFORE UPDATE OF invoice_id, add_on_id ON fees
    FOR EACH ROW
    WHEN (OLD.invoice_id IS DISTINCT FROM NEW.invoice_id
          OR OLD.add_on_id IS DISTINCT FROM NEW.add_on_id)
    EXECUTE FUNCTION changed_references_exist();

-- Deletes. An organization's invoices go with it (ON DELETE CASCADE before); its
-- customers and subscriptions, which go with it by their own foreign keys, then find no
-- invoice of a living organization.
CREATE FUNCTION organizations_deleted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    LOCK TABLE invoices IN SHARE MODE;
    DELETE FROM invoices WHERE organization_id IN (SELECT id FROM deleted);
    RETURN NULL;
END $$;
CREATE TRIGGER organizations_invoices AFTER DELETE ON organizations
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION organizations_deleted();

CREATE FUNCTION invoiced_owner_deleted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    invoiced uuid;
BEGIN
    LOCK TABLE invoices IN SHARE MODE;
    EXECUTE format(
        'SELECT d.id FROM deleted d JOIN invoices i ON i.%I = d.id '
        'JOIN organizations o ON o.id = i.organization_id LIMIT 1', TG_ARGV[0])
    INTO invoiced;
    IF invoiced IS NOT NULL THEN
        RAISE foreign_key_violation
            USING MESSAGE = format('%s %s still has invoices', TG_TABLE_NAME, invoiced),
                  TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER customers_invoices AFTER DELETE ON customers
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION invoiced_owner_deleted('customer_id');
CREATE TRIGGER subscriptions_invoices AFTER DELETE ON subscriptions
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION invoiced_owner_deleted('subscription_id');

-- An invoice's fees go with it (ON DELETE CASCADE before).
CREATE FUNCTION invoices_deleted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    LOCK TABLE fees IN SHARE MODE;
    DELETE FROM fees WHERE invoice_id IN (SELECT id FROM deleted);
    RETURN NULL;
END $$;
CREATE TRIGGER invoices_fees AFTER DELETE ON invoices
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION invoices_deleted();

-- An add-on still billed by a fee of a living organization stays (its foreign key had no
-- ON DELETE action).
CREATE FUNCTION add_ons_deleted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    billed uuid;
BEGIN
    LOCK TABLE fees IN SHARE MODE;
    SELECT d.id INTO billed FROM deleted d JOIN fees f ON f.add_on_id = d.id
        JOIN invoices i ON i.id = f.invoice_id
        JOIN organizations o ON o.id = i.organization_id LIMIT 1;
    IF billed IS NOT NULL THEN
        RAISE foreign_key_violation
            USING MESSAGE = format('add-on %s is billed by fees', billed), TABLE = 'add_ons';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER add_ons_fees AFTER DELETE ON add_ons
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION add_ons_deleted();
