-- A charge's own taxes (`tax_codes` on a plan's charge): they replace the plan's, the
-- customer's and the organization's taxes on that charge's fees, as in Lago.
CREATE TABLE charge_taxes (
    charge_id  uuid NOT NULL REFERENCES charges (id) ON DELETE CASCADE,
    tax_id     uuid NOT NULL REFERENCES taxes (id) ON DELETE CASCADE,
    PRIMARY KEY (charge_id, tax_id)
);
