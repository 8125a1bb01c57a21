export * from './codes.js';
export * from './frame.js';
export * from './messages.js';
export * from './position.js';
export * from './disconnect.js';
export * from './binary.js';
export * from './codec.js';
