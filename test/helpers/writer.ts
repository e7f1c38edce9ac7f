// The steady writer lives with the demo's machinery; the tests use it as it is.
export * from '../../src/infra/writer';
