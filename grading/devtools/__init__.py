"""Developer tools shipped with the package: Azurite for the demo and the tests."""
