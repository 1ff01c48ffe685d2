"""`lmms-textdom measure`: MDI/AEI of logged answers by one teacher-forced forward pass."""
