//! [`runtime::ImageService`] over the store, for the node agent.

use crate::{Image, ImageStore, RegistryAuth};
use async_trait::async_trait;

#[async_trait]
impl runtime::ImageService for ImageStore {
    async fn image_status(&self, reference: &str) -> runtime::Result<Option<Image>> {
        Ok(self.status(reference)?)
    }

    async fn pull(&self, reference: &str, auth: Option<&RegistryAuth>) -> runtime::Result<Image> {
        Ok(self.pull_with_progress(reference, auth, &|_| {}).await?)
    }

    async fn list_images(&self) -> runtime::Result<Vec<Image>> {
        Ok(self.list()?)
    }

    async fn remove_image(&self, reference: &str) -> runtime::Result<()> {
        match self.remove(reference).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => Ok(other?),
        }
    }
}
