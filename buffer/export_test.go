package buffer

// DeadLetterNames are the dead-letter stream and attribute names the
// buffer writes salvaged records with, for the test that checks them
// against transform's.
var DeadLetterNames = []string{deadLetterStream, attrDeadStream, attrDeadStage, attrDeadError, attrDeadTime, attrDeadPrefix}
