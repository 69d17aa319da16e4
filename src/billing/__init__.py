"""meterflow's pure billing domain: money, periods, aggregations, charge models, invoices."""
