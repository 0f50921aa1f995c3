"""The `gridd tui` dashboard (Textual). Only this package (and the `tui` CLI command) imports textual;
it is a client of the broker's event stream and imports gridd.client, gridd.protocol and gridd.config."""
