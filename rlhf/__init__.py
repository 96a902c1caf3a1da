"""The learning side (a Django app): reward models, policies and cycles; rooms: learning, cycle, retarget, evidence."""
