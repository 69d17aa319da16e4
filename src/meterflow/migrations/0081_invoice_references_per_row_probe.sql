-- The per-statement checks of 0080 look each inserted row's references up by their primary
-- keys, whatever the size of the referenced tables.
--
-- Written as NOT EXISTS under OR, each check is a subplan that Postgres may run "hashed":
-- it reads the whole referenced table into a hash table once per statement. It chose that
-- whenever the table was small beside the rows inserted, and a session keeps the plan
-- (the invoicer's sessions force generic plans): on the invoicer's bench, a round of 250
-- invoices read every customer and subscription, and its 750 fees every invoice, a table
-- growing with each round. These checks were a fifth of the invoicer's Postgres CPU, more
-- as the invoices table grew. A scalar subquery is never hashed: each inserted row costs
-- one index probe per reference.

CREATE OR REPLACE FUNCTION invoices_references_exist() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    missing text;
BEGIN
    SELECT format('invoice %s names organization %s, customer %s and subscription %s: '
                  'one of them does not exist', n.id, n.organization_id, n.customer_id,
                  n.subscription_id)
    INTO missing
    FROM inserted n
    WHERE (SELECT true FROM organizations o WHERE o.id = n.organization_id) IS NULL
       OR (SELECT true FROM customers c WHERE c.id = n.customer_id) IS NULL
       OR (n.subscription_id IS NOT NULL  -- a one-off invoice has none
           AND (SELECT true FROM subscriptions s WHERE s.id = n.subscription_id) IS NULL)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE foreign_key_violation USING MESSAGE = missing, TABLE = 'invoices';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION fees_references_exist() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    missing text;
BEGIN
    SELECT format('fee %s names invoice %s and add-on %s: one of them does not exist',
                  n.id, n.invoice_id, n.add_on_id)
    INTO missing
    FROM inserted n
    WHERE (SELECT true FROM invoices i WHERE i.id = n.invoice_id) IS NULL
       OR (n.add_on_id IS NOT NULL
           AND (SELECT true FROM add_ons a WHERE a.id = n.add_on_id) IS NULL)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE foreign_key_violation USING MESSAGE = missing, TABLE = 'fees';
    END IF;
    RETURN NULL;
END $$;
