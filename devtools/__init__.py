"""Developer tools of a source checkout, never in the wheel or a deployment: the simulator, the demo's
sample tenant, Azurite for the demo and the tests, the Kusto.Language check."""
