"""The data disk: free-space guard and test-only fault injection."""
