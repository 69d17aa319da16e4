// Billing objects through Lago's own JavaScript client (lago-javascript-client), against
// the server at LAGO_API_URL: prints one JSON object of what came back, for the pytest
// test to check. The client is loaded from LAGO_JS_SDK (a folder `npm install` filled).
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const sdk = await import(
  pathToFileURL(join(process.env.LAGO_JS_SDK, "node_modules/lago-javascript-client/esm/mod.js")).href
);
const lago = sdk.Client(process.env.LAGO_API_KEY, {
  baseUrl: `${process.env.LAGO_API_URL}/api/v1`,
});
const out = {};

async function lagoError(promise) {
  try {
    await promise;
    return null;
  } catch (error) {
    return await sdk.getLagoError(error);
  }
}

await lago.taxes.createTax({ tax: { name: "VAT", code: "vat", rate: "20" } });
const addOn = (
  await lago.addOns.createAddOn({
    add_on: { name: "Setup", code: "setup", amount_cents: 10000, amount_currency: "EUR", tax_codes: ["vat"] },
  })
).data.add_on;
await lago.addOns.createAddOn({
  add_on: { name: "Training", code: "training", amount_cents: 2500, amount_currency: "EUR" },
});
out.add_on = { code: addOn.code, taxes: addOn.taxes.map((t) => t.code) };
out.updated_add_on = (
  await lago.addOns.updateAddOn("training", { add_on: { amount_cents: 3000 } })
).data.add_on.amount_cents;
out.add_ons = (await lago.addOns.findAllAddOns()).data.add_ons.map((a) => a.code).sort();

await lago.customers.createCustomer({
  customer: { external_id: "js-1", name: "Grace", currency: "EUR", timezone: "America/New_York" },
});
const invoice = (
  await lago.invoices.createInvoice({
    invoice: {
      external_customer_id: "js-1",
      fees: [
        { add_on_code: "setup", units: "1.5" },
        { add_on_code: "training", units: "2", unit_amount_cents: 4000 },
      ],
    },
  })
).data.invoice;
out.invoice = {
  type: invoice.invoice_type,
  fees: invoice.fees_amount_cents,
  taxes: invoice.taxes_amount_cents,
  total: invoice.total_amount_cents,
  fee_amounts: invoice.fees.map((f) => f.amount_cents),
};
out.customer_invoices = (
  await lago.customers.findAllCustomerInvoices("js-1")
).data.invoices.map((i) => i.lago_id === invoice.lago_id);
out.file_url = (await lago.invoices.downloadInvoice(invoice.lago_id)).data.invoice.file_url;

const setupFee = invoice.fees.find((f) => f.item.code === "setup");
const items = [{ fee_id: setupFee.lago_id, amount_cents: 5000 }];
const estimate = (
  await lago.creditNotes.estimateCreditNote({ credit_note: { invoice_id: invoice.lago_id, items } })
).data.estimated_credit_note;
out.estimate = { taxes: estimate.taxes_amount_cents, max: estimate.max_creditable_amount_cents };
const note = (
  await lago.creditNotes.createCreditNote({
    credit_note: { invoice_id: invoice.lago_id, reason: "other", items, credit_amount_cents: 6000 },
  })
).data.credit_note;
out.credit_note = { status: note.credit_status, balance: note.balance_amount_cents };
out.customer_credit_notes = (
  await lago.customers.findAllCustomerCreditNotes("js-1")
).data.credit_notes.length;
out.voided_credit_note = (await lago.creditNotes.voidCreditNote(note.lago_id)).data.credit_note.credit_status;
out.voided_invoice = (await lago.invoices.voidInvoice(invoice.lago_id)).data.invoice.status;
out.void_again = await lagoError(lago.invoices.voidInvoice(invoice.lago_id));

const endpoint = (
  await lago.webhookEndpoints.createWebhookEndpoint({
    webhook_endpoint: { webhook_url: "https://example.com/hooks", signature_algo: "jwt" },
  })
).data.webhook_endpoint;
out.endpoint = endpoint.signature_algo;
out.endpoints = (await lago.webhookEndpoints.findAllWebhookEndpoints()).data.webhook_endpoints.length;
await lago.webhookEndpoints.destroyWebhookEndpoint(endpoint.lago_id);
out.public_key = Buffer.from(
  (await lago.webhooks.fetchJsonPublicKey()).data.webhook.public_key,
  "base64",
).toString().split("\n")[0];

await lago.events.createEvent({
  event: { transaction_id: "js-tx", external_subscription_id: "js-sub", code: "api_calls" },
});
out.event = (await lago.events.findEvent("js-tx")).data.event.external_subscription_id;
out.events = (await lago.events.findAllEvents()).data.events.map((e) => e.transaction_id);

const paid = (
  await lago.invoices.createInvoice({
    invoice: { external_customer_id: "js-1", fees: [{ add_on_code: "training", units: "2" }] },
  })
).data.invoice;
const payment = (
  await lago.payments.createPayment({
    payment: { invoice_id: paid.lago_id, amount_cents: paid.total_amount_cents, reference: "js-wire" },
  })
).data.payment;
out.payment = { amount: payment.amount_cents, invoices: payment.invoice_ids };
out.paid = (await lago.invoices.findInvoice(paid.lago_id)).data.invoice.payment_status;
out.customer_payments = (await lago.customers.findAllCustomerPayments("js-1")).data.payments.length;
// Two months, so that a run at a month's turn still sees the invoice.
const gross = (await lago.analytics.findAllGrossRevenues({ currency: "EUR", months: 2 })).data;
out.gross = gross.gross_revenues.reduce((sum, g) => [sum[0] + g.amount_cents, sum[1] + g.invoices_count], [0, 0]);
out.customer_subscriptions = (
  await lago.customers.findAllCustomerSubscriptions("js-1")
).data.subscriptions.length;
const metric = (
  await lago.billableMetrics.createBillableMetric({
    billable_metric: { name: "Calls", code: "calls", aggregation_type: "count_agg" },
  })
).data.billable_metric;
await lago.plans.createPlan({
  plan: { name: "Pro", code: "pro", interval: "monthly", amount_cents: 1000, amount_currency: "EUR" },
});
const callsCharge = {
  code: "calls",
  billable_metric_id: metric.lago_id,
  charge_model: "standard",
  properties: { amount: "0.5" },
};
const charge = (await lago.plans.createPlanCharge("pro", { charge: callsCharge })).data.charge;
out.charge = { code: charge.code, metric: charge.billable_metric_code, amount: charge.properties.amount };
out.charge_updated = (
  await lago.plans.updatePlanCharge("pro", "calls", { charge: { properties: { amount: "0.75" } } })
).data.charge.properties.amount;
out.plan_charges = (await lago.plans.findAllPlanCharges("pro")).data.charges.map((c) => c.code);
out.charge_found = (await lago.plans.findPlanCharge("pro", "calls")).data.charge.lago_id === charge.lago_id;
out.charge_twice = await lagoError(lago.plans.createPlanCharge("pro", { charge: callsCharge }));
out.charge_deleted = (await lago.plans.destroyPlanCharge("pro", "calls")).data.charge.code;
out.charge_gone = await lagoError(lago.plans.findPlanCharge("pro", "calls"));
out.plan_metadata = (await lago.plans.mergePlanMetadata("pro", { metadata: { tier: "gold" } })).data.metadata;
console.log(JSON.stringify(out));
