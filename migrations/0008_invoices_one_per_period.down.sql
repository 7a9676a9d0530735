DROP INDEX invoices_one_per_period;
