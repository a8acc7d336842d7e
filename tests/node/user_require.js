'use strict';
// A user's own --require'd file, for the NODE_OPTIONS test.
console.log('user require ran');
